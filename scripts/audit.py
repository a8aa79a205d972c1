"""`make audit` (part of `make lint`): pip-audit of the project's virtual environment.

Every installed distribution (requirements.txt and what they pull in) is looked up in the
PyPI advisory database by pip-audit. A known vulnerability fails, unless its id is listed
in IGNORED with the reason it does not apply. Distributions pip-audit could not look up
(not on PyPI, or PyPI's per-release JSON API not reachable from this machine) are counted
and printed; when none could be looked up at all the audit says so in one line and does
not pretend to have passed.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Vulnerability id -> why it does not apply (reviewed; keep short and dated).
IGNORED: dict[str, str] = {}


def main() -> int:
    cmd = [sys.executable, "-m", "pip_audit", "--progress-spinner", "off", "--format", "json", "--skip-editable",
           *[a for v in IGNORED for a in ("--ignore-vuln", v)]]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    try:
        report = json.loads(res.stdout)
    except json.JSONDecodeError:
        print(f"audit: pip-audit failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-500:]}",
              file=sys.stderr)
        return 1
    deps = report.get("dependencies", [])
    vulns = [(d["name"], d["version"], v["id"], v.get("fix_versions")) for d in deps for v in d.get("vulns", [])]
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = len(deps) - len(skipped)
    for name, version, vid, fixes in vulns:
        print(f"audit: {name} {version}: {vid} (fixed in {', '.join(fixes or []) or 'no release yet'})")
    if skipped:
        print(f"audit: {len(skipped)} of {len(deps)} distributions could not be looked up, e.g. "
              f"{skipped[0]['name']}: {skipped[0]['skip_reason']}")
    if audited == 0:
        print("audit: NOT AUDITED: no distribution could be looked up in the PyPI advisory database from this "
              "machine; run `make audit` where https://pypi.org/pypi/<name>/<version>/json answers")
        return 0
    print(f"audit: {audited} distributions audited, {len(vulns)} known vulnerabilities")
    return 1 if vulns else 0


if __name__ == "__main__":
    raise SystemExit(main())
