"""`make demo`: run the demo AOI's DAG end to end on the bundled REAL sample.

    python scripts/demo.py          # run (default), then report
    python scripts/demo.py ui       # the Airflow UI of the demo's deployment (URL, login)
    python scripts/demo.py stop     # stop the demo's Airflow deployment and PostGIS cluster

The DAG runs on a real Airflow deployment: the one-host stack of `make stack`
(scripts/stack.py: CeleryExecutor, two workers, scheduler, api-server; state in
demo-output/stack), triggered through the REST API with Params as the UI's Trigger form
does. Its task logs are written by the workers, so the UI opens them. The results
database is a throwaway PostGIS cluster (cbm_ops.db.devdb); it and the deployment stay up
after the run so the UI shows the same data; a second `make demo` reuses both, finds
nothing new to do and must end with the same rows. CBM_DB_URL points the demo at another
database instead.

Outputs in demo-output/: summary.json (scenes by card and status, rows per band, parcels
with data), <aoi>.png (per-parcel NDVI and S1 backscatter time series) and
<aoi>_parcel_<pid>.png / _s2.json (the LPIS parcel), all through the parcel API; task logs
in demo-output/stack/logs (and in the UI).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cbm_ops.config import load_all  # noqa: E402
from cbm_ops.db.devdb import TempPostgis  # noqa: E402

OUT = ROOT / "demo-output"
STATE = OUT / "devdb.json"
STACK_DIR = OUT / "stack"
DEMO_AOIS = ("demo_flanders", "demo_mechelen")


def database() -> str:
    """URL of the demo database: CBM_DB_URL, the recorded cluster, or a new one."""
    if os.environ.get("CBM_DB_URL"):
        return os.environ["CBM_DB_URL"]
    import psycopg

    if STATE.exists():
        pg = TempPostgis(**json.loads(STATE.read_text()))
        try:
            psycopg.connect(pg.url, connect_timeout=3).close()
            print(f"reusing the demo PostGIS on 127.0.0.1:{pg.port}")
            return pg.url
        except psycopg.OperationalError:
            pg.stop()
            STATE.unlink()
    pg = TempPostgis.start(dbname="cbm_demo")
    OUT.mkdir(exist_ok=True)
    STATE.write_text(json.dumps(pg.__dict__))
    print(f"started a throwaway PostGIS on 127.0.0.1:{pg.port} ({pg.directory})")
    return pg.url


def _stack_module():
    sys.path.insert(0, str(ROOT / "scripts"))
    import stack

    return stack


def demo_stack(url: str):
    """The demo's Airflow deployment on the results database ``url`` (started, or reused)."""
    stack = _stack_module()
    st = stack.load(STACK_DIR)
    if st is not None and st.results_url == url and all(st.alive(n) for n in stack.COMPONENTS):
        print(f"reusing the demo's Airflow deployment on {st.url}")
        return st
    if st is not None:
        stack.stop(STACK_DIR, quiet=True)
    print("starting the Airflow deployment (scripts/stack.py: CeleryExecutor, 2 workers) ...")
    try:
        return stack.start(STACK_DIR, results_url=url)
    except stack.StackError as exc:
        sys.exit(f"the Airflow deployment did not start: {exc}")


def single_instance() -> None:
    """Refuse to run while another demo uses the same Airflow metadata database."""
    import fcntl

    OUT.mkdir(exist_ok=True)
    global _LOCK
    _LOCK = open(OUT / ".demo.lock", "w")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit("another `make demo` / `make demo-ui` is running on demo-output/; stop it first")


def run() -> None:
    single_instance()
    url = database()
    aois = [a for a in load_all().values() if a.name in DEMO_AOIS]
    from cbm_ops.db.partitions import migrate

    for cfg in aois:       # a demo database of an earlier version: partition its results in place
        out = migrate(url, cfg)
        if any(isinstance(v, dict) for v in out.values()):
            print(f"{cfg.schema}: result tables converted to partitioned tables: {out}")
    before = counts(url, aois)
    st = demo_stack(url)
    api = st.api
    for cfg in aois:
        dag_id = f"cbm_{cfg.name}"
        conf = {"start": str(cfg.start_date), "end": str(cfg.end_date or dt.date.today())}
        # Runs of paused DAGs are not scheduled; unpausing also creates the latest scheduled
        # run, which does nothing after the AOI's campaign (see dags/cbm_aoi.py).
        api.patch(f"/dags/{dag_id}", {"is_paused": False})
        print(f"trigger {dag_id} with {json.dumps(conf)} (REST API: what the UI's Trigger form sends) ...")
        t0 = dt.datetime.now()
        r = api.trigger(dag_id, conf)
        done = api.wait_run(dag_id, r["dag_run_id"], timeout=3600)
        link = f"{st.url}/dags/{dag_id}/runs/{r['dag_run_id']}"
        print(f"  {done['state']} in {(dt.datetime.now() - t0).total_seconds():.0f} s: {link}")
        if done["state"] != "success":
            sys.exit(f"the run of {dag_id} failed: see its task logs at {link} (user admin, password "
                     f"{st.password})")
    after = counts(url, aois)
    summary = {cfg.name: report(url, cfg) for cfg in aois}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nwrote {OUT.relative_to(ROOT)}/summary.json and "
          + ", ".join(f"{OUT.relative_to(ROOT)}/{c.name}.png" for c in aois))
    last = OUT / "last-run-rows.json"
    previous = json.loads(last.read_text()) if last.exists() else None
    last.write_text(json.dumps(after))
    if previous is not None and previous == before:
        # the database is as the previous demo run left it: this run must change nothing
        same = "the same" if before == after else "DIFFERENT"
        print(f"rows [sigs, hists] before this run {before}, after {after}: {same}")
        if before != after:
            sys.exit("a repeated demo run must not change the stored rows")
    elif any(sum(v) for v in before.values()):
        print(f"rows [sigs, hists] before this run {before} (left by other runs on this database), "
              f"after {after}")
    print(f"\nThe Airflow UI of this run (task logs, grid, Trigger form): {st.url}/  "
          f"user admin, password {st.password}   (again: make demo-ui)\n"
          f"The parcel viewer (map, time series, chips; also Plugins -> CbM in the UI): "
          f"{st.url}/cbm/viewer/?aoi={aois[0].name}&pid=1\n"
          "Stop the demo's Airflow deployment and database when done:\n"
          "  make demo-stop")


def counts(url: str, aois) -> dict[str, list[int]]:
    """[sigs rows, hists rows] per demo AOI (0, 0 before the first run)."""
    from cbm_ops.db import q, transaction

    out = {}
    with transaction(url) as conn:
        for cfg in aois:
            exists = conn.execute(q("table_exists"), {"name": f'"{cfg.schema}".sigs'}).fetchone()[0]
            out[cfg.name] = list(conn.execute(q("report_counts", schema=cfg.schema)).fetchone()) if exists else [0, 0]
    return out


def report(url: str, cfg) -> dict:
    """Per-parcel table (printed), summary dict; one parcel's time series and the PNGs through the API."""
    from cbm_ops.analyst.report import aoi_report

    rep = aoi_report(url, cfg)
    print(f"\n{cfg.name}: {cfg.description}")
    print(f"{'pid':>7} {'parcel':18} {'crop':22} {'S2 obs':>6} {'S1 obs':>6} {'S2 clear':>8}  kind")
    for r in rep["parcels"]:
        print(f"{r['pid']:>7} {str(r['name'])[:18]:18} {str(r['crop'] or '-')[:22]:22} {r['s2_obs']:6d} "
              f"{r['s1_obs']:6d} {r['s2_cloud_free']:8d}  {r['kind'] or ''}")
    print("S2/S1 obs: canonical observations (one per parcel and datatake); S2 clear: dates whose SCL histogram "
          "of the parcel has none of the classes 3, 8, 9, 10, 11 (parcels smaller than one 20 m pixel have none)")
    print("scenes per card:", rep["scenes_per_card"], " with parcel data:", rep["scenes_with_parcel_data"],
          " with every band:", rep["scenes_with_all_bands"])
    print("rows per band:", rep["rows_per_band"], " hists:", rep["hists_rows"])
    rep["api"] = api_report(url, cfg, rep["parcels"])
    return {k: v for k, v in rep.items() if k != "clear"}


def api_report(url: str, cfg, parcels: list[dict]) -> dict:
    """Through the parcel API (standalone uvicorn on a free port, a random bearer token):
    print one parcel's S2 time series, write it as JSON and the plots as PNG (plot endpoint)."""
    import secrets
    import socket
    import threading
    import time

    import requests
    import uvicorn

    sys.path.insert(0, str(ROOT / "plugins"))
    from cbm_api import create_app

    token = secrets.token_urlsafe(24)
    app = create_app(auth="standalone", tokens=[token], db_url=lambda _cfg: url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    out: dict = {}
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        base, auth = f"http://127.0.0.1:{port}/query", {"Authorization": f"Bearer {token}"}
        lpis = next((p for p in parcels if p["kind"] == "LPIS parcel"), parcels[0])
        pid = lpis["pid"]
        params = {"aoi": cfg.name, "pid": pid, "tstype": "s2", "year": 2018}
        r = requests.get(f"{base}/parcelTimeSeries", params=params, headers=auth, timeout=60)
        r.raise_for_status()
        ts = r.json()
        (OUT / f"{cfg.name}_parcel_{pid}_s2.json").write_text(json.dumps(ts))
        print(f"\nparcel {pid} ({lpis['crop']}) through the API: GET /query/parcelTimeSeries?"
              + "&".join(f"{k}={v}" for k, v in params.items())
              + f"  (standalone uvicorn, bearer token; {len(ts['band'])} rows, columns {', '.join(ts)})")
        print(f"{'date (UTC)':19} {'obsid':>5} {'tile':5} {'B04':>7} {'B08':>7} {'NDVI':>6}  cloud-free")
        rows = {}
        for i, t in enumerate(ts["obstime"]):
            rows.setdefault((t, ts["obsid"][i]), {})[ts["band"][i]] = i
        keys = list(rows)
        for n, (t, obsid) in enumerate(keys):
            if n == 8 and len(keys) > 12:
                print(f"... {len(keys) - 12} more dates (all in the JSON file) ...")
            if 8 <= n < len(keys) - 4:
                continue
            bands = rows[(t, obsid)]
            i = next(iter(bands.values()))
            b4 = ts["mean"][bands["B04"]] if "B04" in bands else float("nan")
            b8 = ts["mean"][bands["B08"]] if "B08" in bands else float("nan")
            ndvi = ts["ndvi"][i]
            print(f"{t:19} {obsid:5d} {ts['tile'][i] or '':5} {b4:7.0f} {b8:7.0f} "
                  f"{'' if ndvi is None else f'{ndvi:6.3f}':>6}  {ts['cloudfree'][i]}")
        plots = {f"{cfg.name}_parcel_{pid}.png": [("pid", pid)],
                 f"{cfg.name}.png": [("pid", p["pid"]) for p in parcels[:24]]}
        for name, pids in plots.items():
            r = requests.get(f"{base}/parcelPlot", params=[("aoi", cfg.name), *pids], headers=auth, timeout=300)
            r.raise_for_status()
            (OUT / name).write_bytes(r.content)
        print(f"wrote {OUT.relative_to(ROOT)}/{cfg.name}_parcel_{pid}_s2.json and, through GET /query/parcelPlot, "
              + ", ".join(f"{OUT.relative_to(ROOT)}/{n}" for n in plots))
        out = {"parcel": pid, "time_series_rows": len(ts["band"]), "plots": list(plots)}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return out


def ui() -> None:
    single_instance()
    st = demo_stack(database())
    print(_stack_module().describe(st))
    print("(the demo's deployment keeps running: make demo-stop stops it)")


def stop() -> None:
    stack = _stack_module()
    if stack.load(STACK_DIR) is not None:
        stack.stop(STACK_DIR, quiet=True)
        print("demo Airflow deployment stopped")
    if STATE.exists():
        TempPostgis(**json.loads(STATE.read_text())).stop()
        STATE.unlink()
        print("demo PostGIS stopped and removed")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", nargs="?", default="run", choices=["run", "ui", "stop"])
    {"run": run, "ui": ui, "stop": stop}[ap.parse_args().action]()
