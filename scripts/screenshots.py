"""`make screenshots`: PNGs of the Airflow UI of the running stack, as a user sees it.

    python scripts/screenshots.py [--state-dir stack-output] [--out docs/img] [--dag cbm_demo_flanders]

Drives the Debian ``chromium`` package headless through its DevTools protocol (no browser
download): logs in with a token from ``POST /auth/token`` (the ``_token`` cookie the UI's
login sets), opens each page, waits until the page shows the DAG id, and saves:

* ``ui-dag-list.png``: the DAG list;
* ``ui-run-grid.png``: the run's grid and task list;
* ``ui-mapped-labels.png``: the map indexes of an extract task, labelled with their batch;
* ``ui-trigger-form.png``: the Trigger form with the Params (date pickers, multi-selects);
* ``ui-extract-log.png``: the log of an extract batch.

Without a finished run of the DAG on the stack, one is triggered first (May 2018 of the
demo sample). `make stack` must be running (or pass ``--start`` to start it).

:class:`Browser` (``goto``, ``wait_for``, ``click_at``, ``screenshot``, ``dom``) is also used by
tests_stack/test_ui.py and tests/test_viewer.py (the parcel viewer's page).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT)]

import stack as stack_mod  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if exe := shutil.which(name):
            return exe
    raise SystemExit("chromium is not installed: run `bash scripts/install-system-deps.sh --chromium` "
                     "(the Debian package chromium)")


class Browser:
    """Headless Chromium driven over the DevTools protocol (one page)."""

    def __init__(self, width: int = 1440, height: int = 900):
        import requests
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="cbm-chromium-")
        port = stack_mod.free_port()
        self.proc = subprocess.Popen(
            [chromium(), *CHROMIUM_FLAGS, f"--remote-debugging-port={port}", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                pages = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                         if t["type"] == "page"]
                if pages:
                    break
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.2)
        self._conn = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.ws = self._conn.__enter__()
        self._id = 0
        self._handlers: dict[str, Any] = {}
        self.call("Page.enable")
        self.call("Network.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def call(self, method: str, **params: Any) -> dict:
        self._id += 1
        mine = self._id                       # event handlers may send commands of their own meanwhile
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == mine:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _send(self, method: str, **params: Any) -> None:
        """A command whose answer is not waited for (answers to events)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))

    def _event(self, msg: dict) -> None:
        handler = self._handlers.get(msg.get("method", ""))
        if handler is not None:
            handler(msg.get("params", {}))

    def pump(self, seconds: float) -> None:
        """Handle the page's events for ``seconds`` (instead of sleeping)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                return
            self._event(msg)

    def basic_auth(self, user: str, password: str) -> None:
        """Answer HTTP basic login challenges with these credentials, as a user answers the
        browser's login dialog (Chrome then keeps them for the origin and realm)."""
        self._handlers["Fetch.requestPaused"] = lambda p: self._send("Fetch.continueRequest", requestId=p["requestId"])
        self._handlers["Fetch.authRequired"] = lambda p: self._send(
            "Fetch.continueWithAuth", requestId=p["requestId"],
            authChallengeResponse={"response": "ProvideCredentials", "username": user, "password": password})
        self.call("Fetch.enable", handleAuthRequests=True)

    def eval(self, expr: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return res.get("result", {}).get("value")

    def login(self, base_url: str, token: str) -> None:
        """Set the UI's JWT cookie (what the login page does after a successful login)."""
        self.call("Network.setCookie", name="_token", value=token, url=base_url + "/", path="/")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expr: str, timeout: float = 60) -> None:
        """Wait until the JavaScript expression is true (the page has rendered)."""
        deadline = time.monotonic() + timeout
        while not self.eval(expr):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page did not show {expr!r} within {timeout:.0f} s: "
                                   f"{(self.eval('document.body && document.body.innerText') or '')[:300]!r}")
            self.pump(0.2)

    def wait_text(self, text: str, timeout: float = 60) -> None:
        self.wait_for(f"document.body && document.body.innerText.includes({json.dumps(text)})", timeout)

    def dom(self) -> str:
        return self.eval("document.documentElement.outerHTML") or ""

    def click_text(self, text: str, selector: str = "button", timeout: float = 30) -> bool:
        """Click the first ``selector`` element whose text is ``text`` once it is there."""
        expr = (f"(() => {{ const b = [...document.querySelectorAll({json.dumps(selector)})]"
                f".find(e => e.innerText.trim() === {json.dumps(text)}); if (b) {{ b.click(); return true }}"
                " return false })()")
        deadline = time.monotonic() + timeout
        while not self.eval(expr):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.3)
        return True

    def headers(self, headers: dict[str, str]) -> None:
        """Send these HTTP headers with every request of the page (e.g. ``Authorization``)."""
        self.call("Network.setExtraHTTPHeaders", headers=headers)

    def click_at(self, x: float, y: float) -> None:
        """A real left click at viewport pixel (x, y): mouse moved, pressed and released there."""
        for kind, buttons in (("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 0)):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left" if kind != "mouseMoved"
                      else "none", buttons=buttons, clickCount=1 if kind != "mouseMoved" else 0)

    def type_text(self, text: str) -> None:
        """Type text into the focused element (as a keyboard would insert it)."""
        self.call("Input.insertText", text=text)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self._conn.__exit__(None, None, None)
        # closing the DevTools connection anyway
        except Exception:  # noqa: BLE001  # nosec B110
            pass
        self.proc.kill()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


def pages(stack: stack_mod.Stack, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, str]:
    """UI address of each screenshot."""
    u = stack.url
    return {
        "ui-dag-list": f"{u}/dags",
        "ui-run-grid": f"{u}/dags/{dag_id}/runs/{run_id}",
        "ui-mapped-labels": f"{u}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mapped",
        "ui-trigger-form": f"{u}/dags/{dag_id}",
        "ui-extract-log": f"{u}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mapped/{map_index}",
    }


def finished_run(stack: stack_mod.Stack, dag_id: str) -> dict:
    """The successful run of the DAG with the most extract batches; triggers one if there is none.

    The run triggered is the demo's (the AOI's whole campaign, as `make demo`).
    """
    from cbm_ops.config import load_all

    api = stack.api
    best, most = None, 0
    for r in api.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "-start_date", "limit": 50})["dag_runs"]:
        n = sum(t["task_id"].endswith(".extract") and t["map_index"] >= 0
                for t in api.task_instances(dag_id, r["dag_run_id"]))
        if r["state"] == "success" and n > most:
            best, most = r, n
    if best is not None:
        return best
    cfg = next(c for c in load_all(stack.aoi_dir).values() if f"cbm_{c.name}" == dag_id)
    conf = {"start": str(cfg.start_date), "end": str(cfg.end_date or dt.date.today())}
    print(f"no finished run of {dag_id} with extract tasks: triggering one with {conf} ...")
    api.patch(f"/dags/{dag_id}", {"is_paused": False})
    run = api.trigger(dag_id, conf)
    return api.wait_run(dag_id, run["dag_run_id"], timeout=1800)


def take(stack: stack_mod.Stack, dag_id: str, out: Path) -> list[Path]:
    run = finished_run(stack, dag_id)
    run_id = run["dag_run_id"]
    tis = [t for t in stack.api.task_instances(dag_id, run_id) if t["task_id"] == "s2_10m.extract"] or \
          [t for t in stack.api.task_instances(dag_id, run_id) if t["task_id"].endswith(".extract")]
    ti = sorted(tis, key=lambda t: t["map_index"])[0]
    urls = pages(stack, dag_id, run_id, ti["task_id"], ti["map_index"])
    b = Browser()
    saved = []
    try:
        b.login(stack.url, stack.api.token())
        for name, url in urls.items():
            b.goto(url)
            b.wait_text(dag_id)
            if name == "ui-dag-list":
                b.wait_text("cbm_")
            elif name == "ui-mapped-labels":
                b.wait_text(ti["rendered_map_index"][:20])
            elif name == "ui-extract-log":
                b.wait_text("batch ", timeout=90)
            elif name == "ui-trigger-form":
                if not b.click_text("Trigger"):
                    raise TimeoutError("no Trigger button on the DAG page")
                b.wait_text("Window start", timeout=30)
            time.sleep(1.5)                       # let charts and fonts settle
            saved.append(b.screenshot(out / f"{name}.png"))
            print(f"{out / (name + '.png')}  <- {url}")
    finally:
        b.close()
    return saved


def viewer_shots(b: Browser, base: str, aoi: str, pid: int, out: Path, *, chips: int = 3) -> list[Path]:
    """The parcel viewer at ``base`` (the API root: ``<ui>/cbm`` or a standalone API): the
    parcel ``pid`` with its NDVI/S1 chart and the chips of up to ``chips`` cloud-free dates
    (``viewer-parcel.png``), then coloured by cloud-free dates with the B08 band's p25-p75
    (``viewer-band.png``)."""
    saved = []
    b.goto(f"{base}/viewer/?aoi={aoi}&pid={pid}")
    b.wait_for(f"window.cbmViewer && cbmViewer.ready && cbmViewer.state.pid === {pid} && cbmViewer.chart && "
               "cbmViewer.chart.data.datasets.length > 0 && cbmViewer.map.areTilesLoaded()", 120)
    if chips:
        pts = b.eval("""(() => { const c = cbmViewer.chart, m = c.getDatasetMeta(0);
            const r = c.canvas.getBoundingClientRect(), n = m.data.length;
            return [0.3, 0.55, 0.8].map(f => m.data[Math.floor(f * (n - 1))]).filter(Boolean)
                .map(e => [r.left + e.x, r.top + e.y]); })()""") or []
        for x, y in pts[:chips]:
            b.click_at(x, y)
            b.pump(0.5)
        try:
            b.wait_for("[...document.querySelectorAll('#chips img')].length > 0 && "
                       "[...document.querySelectorAll('#chips img')].every(i => i.complete)", 60)
        except TimeoutError:
            print("no image chips shown (the API has no chip routes, or no chip for these dates)")
            b.eval("document.querySelectorAll('#chips .chip').forEach(c => "
                   "{ if (c.querySelector('.err')) c.remove(); })")
        if pts:                                   # the lineage of the middle date under the chart
            b.call("Input.dispatchMouseEvent", type="mouseMoved", x=pts[len(pts) // 2][0], y=pts[len(pts) // 2][1])
            b.pump(0.5)
    b.call("Input.dispatchMouseEvent", type="mouseMoved", x=5, y=5)      # no tooltip over the chart
    b.pump(1.5)
    saved.append(b.screenshot(out / "viewer-parcel.png"))
    b.eval("(() => { const a = document.getElementById('attr'); a.value = 's2_clear';"
           " a.dispatchEvent(new Event('change')); const s = document.getElementById('series');"
           " s.value = 's2:B08'; s.dispatchEvent(new Event('change')); })()")
    b.pump(2.0)
    saved.append(b.screenshot(out / "viewer-band.png"))
    return saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-dir", type=Path, default=stack_mod.DEFAULT_STATE)
    ap.add_argument("--out", type=Path, default=ROOT / "stack-output" / "screenshots")
    ap.add_argument("--dag", default="cbm_demo_flanders")
    ap.add_argument("--start", action="store_true", help="start the stack if it is not running")
    args = ap.parse_args(argv)
    stack = stack_mod.load(args.state_dir)
    if stack is None or not stack.alive("api-server"):
        if not args.start:
            print(f"no running stack in {args.state_dir}: run `make stack` first (or pass --start)", file=sys.stderr)
            return 1
        if stack is not None:
            stack_mod.stop(args.state_dir, quiet=True)
        stack = stack_mod.start(args.state_dir)
    take(stack, args.dag, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
