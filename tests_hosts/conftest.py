"""Multi-host tests (`make test-hosts`): the deployment of scripts/hosts.py for the session.

A control host and two worker hosts, each in its own network, mount and UTS namespace on a
bridge (needs root). Every fault scenario runs the same window of the demo sample on its own
copy of the demo AOI (own schema) and compares its rows with those of ``hosts_clean``, the
clean run of that window, row for row.

Test settings (environment overrides, as in tests_stack): a 20 s task heartbeat timeout
(Airflow default 300 s; deploy/airflow.env 120 s) so that a dead worker's task is noticed
quickly; a 60 s queued-task timeout (default 600 s; see test_faults.py, link down); in the
AOI files, retries of extract tasks after 6 s and of the other tasks after
30 s (defaults 30 s and 2 min). State, component logs and ``scenarios.json`` (the measured figures) stay in
hosts-test-output/.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT)]

import hosts as hosts_mod  # noqa: E402

STATE = ROOT / "hosts-test-output"
DEMO = ROOT / "include" / "aois" / "demo_flanders.yaml"
HEARTBEAT_TIMEOUT_S = 20
QUEUED_TIMEOUT_S = 60
OVERRIDES = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # a Celery message popped by a worker host's blocked BRPOP while its link is down is lost
    # in flight; Airflow requeues a task queued this long (default 600 s)
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(QUEUED_TIMEOUT_S),
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
}
FAULTS = ("link", "kill", "redis", "sched", "meta", "results", "store", "scratch")
LOAD_AOI = "hosts_analysts"


def _aoi(name: str, **changes) -> dict:
    cfg = yaml.safe_load(DEMO.read_text())
    cfg.update(name=name, schema=name, description=f"multi-host test AOI {name} (copy of demo_flanders)",
               cards=["s2", "bs"], tags=["hosts-test"], schedule=None, max_active_runs=1, retries=2,
               batch_size=20, extract_retry_delay_minutes=0.1, retry_delay_minutes=0.5)
    cfg["bands"].pop("c6")
    cfg["maintenance"]["backup_dir"] = None
    cfg["store"] = {"kind": "mount", "root": str(STATE / "eodata")}    # the workers' read-only mount
    cfg.update(changes)
    return cfg


AOIS = {"hosts_clean": _aoi("hosts_clean"), **{f"hosts_{f}": _aoi(f"hosts_{f}") for f in FAULTS},
        # extraction of the whole sample while analysts query (test_load.py)
        "hosts_busy": _aoi("hosts_busy", batch_size=10),
        # the SYNTHETIC 9 M-row AOI the analysts query (scripts/analysts.py builds its rows)
        LOAD_AOI: _aoi(LOAD_AOI, parcels={"table": "parcels"}, cards=["s2"],
                       bands={"scl": ["SCL"], "s2_10m": ["B02", "B03", "B04", "B08"], "s2_20m": []},
                       catalogue={"source": "offline", "path": "include/sample/catalogue"})}


@pytest.fixture(scope="session")
def stack():
    """The running three-host stack; stopped (namespaces, clusters removed) at the end."""
    if (STATE / "stack.json").exists():
        hosts_mod.stop(STATE, quiet=True)
    aoi_dir = STATE / "aois"
    aoi_dir.mkdir(parents=True, exist_ok=True)
    for f in aoi_dir.glob("*.yaml"):
        f.unlink()
    for name, cfg in AOIS.items():
        (aoi_dir / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.monotonic()
    st = hosts_mod.start(STATE, aoi_dir=aoi_dir, overrides=OVERRIDES, quiet=True)
    Scenarios.record("start", {"wall_s": round(time.monotonic() - t0, 1),
                               "hosts": {h: st.ip(h) for h in hosts_mod.HOST_NAMES}})
    try:
        yield st
    finally:
        hosts_mod.stop(STATE, quiet=True)


@pytest.fixture(scope="session")
def api(stack):
    return stack.api


class Db:
    """The results database for the tests' own queries (autocommit), reconnecting once when
    a scenario restarted the server under it."""

    def __init__(self, url: str):
        self.url = url
        self.conn = psycopg.connect(url, autocommit=True)

    def execute(self, *args, **kw):
        try:
            return self.conn.execute(*args, **kw)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            if not self.conn.closed and not self.conn.broken:
                raise
            self.conn = psycopg.connect(self.url, autocommit=True)
            return self.conn.execute(*args, **kw)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="session")
def db(stack):
    d = Db(stack.results_url_here)
    yield d
    d.close()


class Scenarios:
    """Findings of the scenarios (recovery times, row comparisons, load-test figures)."""

    data: dict = {}

    @classmethod
    def record(cls, name: str, value: dict) -> None:
        cls.data.setdefault(name, {}).update(value)
        STATE.mkdir(exist_ok=True)
        (STATE / "scenarios.json").write_text(json.dumps(cls.data, indent=2, default=str))


@pytest.fixture
def record():
    return Scenarios.record
