"""`make demo`: run the demo AOI's DAG end to end on the bundled REAL sample.

    python scripts/demo.py          # run (default), then report
    python scripts/demo.py ui       # Airflow UI (airflow standalone) on the same data
    python scripts/demo.py stop     # stop the demo's PostGIS cluster

The results database is a throwaway PostGIS cluster (cbm_ops.devdb) that stays up after
the run so the UI can show the same data; a second `make demo` reuses it, finds nothing
new to do and must end with the same rows. CBM_DB_URL points the demo at another
database instead. Airflow's own metadata is a SQLite file in demo-output/airflow-home.

Outputs in demo-output/: summary.json (scenes by card and status, rows per band, parcels
with data), <aoi>.png (per-parcel NDVI and S1 backscatter time series), dag-test.log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cbm_ops.config import load_all  # noqa: E402
from cbm_ops.devdb import TempPostgis  # noqa: E402

OUT = ROOT / "demo-output"
STATE = OUT / "devdb.json"
AF_HOME = OUT / "airflow-home"
DEMO_AOIS = ("demo_flanders", "demo_mechelen")
CLOUDY = {"3", "8", "9", "10", "11"}       # SCL classes that make a parcel-date not cloud-free


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


def airflow_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(AF_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AF_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW_CONN_CBM_DB": url,
        "CBM_AOI_DIR": str(ROOT / "include" / "aois"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    return env


def airflow(*args: str, env: dict[str, str], log: Path | None = None) -> None:
    exe = str(Path(sys.executable).with_name("airflow"))
    if log is None:
        subprocess.run([exe, *args], env=env, check=True)
        return
    with open(log, "a") as f:
        res = subprocess.run([exe, *args], env=env, stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        sys.exit(f"`airflow {' '.join(args[:3])}` failed ({res.returncode}); see {log}")


def run() -> None:
    OUT.mkdir(exist_ok=True)
    AF_HOME.mkdir(parents=True, exist_ok=True)
    url = database()
    env = airflow_env(url)
    log = OUT / "dag-test.log"
    log.write_text("")
    aois = [a for a in load_all().values() if a.name in DEMO_AOIS]
    before = counts(url, aois)
    print("airflow db migrate ...")
    airflow("db", "migrate", env=env, log=log)
    airflow("pools", "set", "cbm_extract", "2", "cbm-airflow extraction", env=env, log=log)
    for cfg in aois:
        conf = {"start": str(cfg.start_date), "end": str(cfg.end_date or dt.date.today())}
        print(f"airflow dags test cbm_{cfg.name} -c '{json.dumps(conf)}'  (log: {log.relative_to(ROOT)})")
        t0 = dt.datetime.now()
        airflow("dags", "test", f"cbm_{cfg.name}", "-c", json.dumps(conf), env=env, log=log)
        print(f"  finished in {(dt.datetime.now() - t0).total_seconds():.0f} s")
    after = counts(url, aois)
    summary = {cfg.name: report(url, cfg) for cfg in aois}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nwrote {OUT.relative_to(ROOT)}/summary.json and "
          + ", ".join(f"{OUT.relative_to(ROOT)}/{c.name}.png" for c in aois))
    if any(before.values()):
        same = "the same" if before == after else "DIFFERENT"
        print(f"rows before this run {before}, after {after}: {same}")
        if before != after:
            sys.exit("a repeated demo run must not change the stored rows")
    print("\nOpen the Airflow UI on the same data:\n"
          "  make demo-ui        # airflow standalone on http://localhost:8080, user admin / admin\n"
          "Stop the demo database when done:\n"
          "  make demo-stop")


def counts(url: str, aois) -> dict[str, list[int]]:
    import psycopg

    out = {}
    with psycopg.connect(url) as c:
        for cfg in aois:
            if c.execute("SELECT to_regclass(%s)", (f'"{cfg.schema}".sigs',)).fetchone()[0] is None:
                out[cfg.name] = [0, 0]
                continue
            out[cfg.name] = [c.execute(f'SELECT count(*) FROM "{cfg.schema}".{t}').fetchone()[0]
                             for t in ("sigs", "hists")]
    return out


def report(url: str, cfg) -> dict:
    """Per-parcel table (printed), summary dict, and the PNG of the AOI."""
    import psycopg

    s = cfg.schema
    crop = cfg.parcels.crop_column
    with psycopg.connect(url) as c:
        cols = {r[0] for r in c.execute("SELECT column_name FROM information_schema.columns "
                                        "WHERE table_schema = %s AND table_name = %s", (s, cfg.parcels.table))}
        name_col = "name" if "name" in cols else "ogc_fid"
        kind_col = "kind" if "kind" in cols else "NULL"
        crop_sql = crop if crop and crop in cols else "NULL"
        parcels = c.execute(f'SELECT ogc_fid, {name_col}::text, {kind_col}::text, {crop_sql}::text '
                            f'FROM "{s}".{cfg.parcels.table} ORDER BY ogc_fid').fetchall()
        by_status = [dict(zip(("card", "status", "scenes"), r, strict=True)) for r in c.execute(
            f'SELECT card, status, count(*)::int FROM "{s}".dias_catalogue GROUP BY 1, 2 ORDER BY 1, 2')]
        rows_per_band = dict(c.execute(f'SELECT trim(band), count(*) FROM "{s}".sigs GROUP BY 1 ORDER BY 1'))
        hists_rows = c.execute(f'SELECT count(*) FROM "{s}".hists').fetchone()[0]
        sig = c.execute(f'''SELECT s.pid, d.obstime, trim(s.band), s.mean FROM "{s}".sigs s
                            JOIN "{s}".dias_catalogue d ON d.id = s.obsid
                            WHERE s.band IN ('B04', 'B08', 'VVb', 'VHb') ORDER BY 2''').fetchall()
        hist = c.execute(f'''SELECT h.pid, d.obstime, h.hist FROM "{s}".hists h
                             JOIN "{s}".dias_catalogue d ON d.id = h.obsid''').fetchall()
        stages = [dict(zip(("card", "stage", "status", "scenes"), r, strict=True)) for r in c.execute(
            f'''SELECT d.card, t.stage, t.status, count(*)::int FROM "{s}".scene_stages t
                JOIN "{s}".dias_catalogue d ON d.id = t.obsid GROUP BY 1, 2, 3 ORDER BY 1, 2, 3''')]
        scenes_with_parcels = dict(c.execute(
            f'''SELECT d.card, count(DISTINCT d.id)::int FROM "{s}".dias_catalogue d
                WHERE EXISTS (SELECT 1 FROM "{s}".sigs x WHERE x.obsid = d.id)
                   OR EXISTS (SELECT 1 FROM "{s}".hists h WHERE h.obsid = d.id) GROUP BY 1'''))
    series: dict[int, dict[str, dict]] = {p[0]: {"B04": {}, "B08": {}, "VVb": {}, "VHb": {}} for p in parcels}
    for pid, t, band, mean in sig:
        series.setdefault(pid, {"B04": {}, "B08": {}, "VVb": {}, "VHb": {}})[band][t] = mean
    clear: dict[int, dict] = {}
    for pid, t, h in hist:
        clear.setdefault(pid, {})[t] = not (set(h) & CLOUDY)
    table = []
    for pid, name, kind, crop_name in parcels:
        ser = series.get(pid, {})
        table.append({"pid": pid, "name": name, "kind": kind, "crop": crop_name,
                      "s2_obs": len(ser.get("B04", {})), "s1_obs": len(ser.get("VVb", {})),
                      "s2_cloud_free": sum(clear.get(pid, {}).values())})
    print(f"\n{cfg.name}: {cfg.description}")
    print(f"{'pid':>7} {'parcel':18} {'crop':22} {'S2 obs':>6} {'S1 obs':>6} {'S2 clear':>8}  kind")
    for r in table:
        print(f"{r['pid']:>7} {str(r['name'])[:18]:18} {str(r['crop'] or '-')[:22]:22} {r['s2_obs']:6d} "
              f"{r['s1_obs']:6d} {r['s2_cloud_free']:8d}  {r['kind'] or ''}")
    plot(cfg, parcels, series, clear, OUT / f"{cfg.name}.png")
    return {"scenes_by_card_and_status": by_status, "stages": stages, "rows_per_band": rows_per_band,
            "hists_rows": hists_rows, "scenes_with_parcel_data": scenes_with_parcels,
            "parcels": len(parcels), "parcels_with_data": sum(1 for r in table if r["s2_obs"] or r["s1_obs"]),
            "per_parcel": table}


def plot(cfg, parcels, series, clear, path: Path) -> None:
    """Small multiples: NDVI (cloud-free filled, cloudy hollow) and S1 VV/VH in dB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(parcels)
    cols = 4 if n > 4 else n
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), sharex=True, squeeze=False)
    for ax, (pid, name, kind, crop) in zip(axes.flat, parcels, strict=False):
        ser = series.get(pid, {})
        ts = sorted(set(ser.get("B04", {})) & set(ser.get("B08", {})))
        if ts:
            ndvi = [(ser["B08"][t] - ser["B04"][t]) / (ser["B08"][t] + ser["B04"][t]) for t in ts]
            ok = [clear.get(pid, {}).get(t, True) for t in ts]
            ax.plot([t for t, k in zip(ts, ok, strict=True) if k], [v for v, k in zip(ndvi, ok, strict=True) if k],
                    "o-", color="tab:green", ms=3, lw=0.8, label="NDVI cloud-free")
            ax.plot([t for t, k in zip(ts, ok, strict=True) if not k],
                    [v for v, k in zip(ndvi, ok, strict=True) if not k],
                    "o", mfc="none", color="0.6", ms=3, label="NDVI cloudy (SCL)")
        ax.set_ylim(-0.2, 1.0)
        ax.set_title(f"{name} ({crop or '-'})" + (" [LPIS parcel]" if kind == "LPIS parcel" else ""), fontsize=8)
        ax.tick_params(labelsize=6)
        ax2 = ax.twinx()
        for band, color in (("VVb", "tab:blue"), ("VHb", "tab:purple")):
            pts = sorted(ser.get(band, {}).items())
            pts = [(t, 10 * math.log10(v)) for t, v in pts if v and v > 0]
            if pts:
                ax2.plot(*zip(*pts, strict=True), "-", color=color, lw=0.6, alpha=0.8, label=f"S1 {band[:2]} dB")
        ax2.set_ylim(-30, 0)
        ax2.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    handles = [h for a in (axes.flat[0], axes.flat[0].figure.axes[-1]) for h in a.get_legend_handles_labels()[0]]
    labels = [lb for a in (axes.flat[0], axes.flat[0].figure.axes[-1]) for lb in a.get_legend_handles_labels()[1]]
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=8)
    fig.suptitle(f"{cfg.name}: NDVI from B04/B08 means (left axis), Sentinel-1 backscatter dB (right axis)",
                 fontsize=10, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ui() -> None:
    url = database()
    env = airflow_env(url)
    print("Airflow UI: http://localhost:8080  (user admin, password admin); Ctrl-C to stop")
    airflow("standalone", env=env)


def stop() -> None:
    if STATE.exists():
        TempPostgis(**json.loads(STATE.read_text())).stop()
        STATE.unlink()
        print("demo PostGIS stopped and removed")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", nargs="?", default="run", choices=["run", "ui", "stop"])
    {"run": run, "ui": ui, "stop": stop}[ap.parse_args().action]()
