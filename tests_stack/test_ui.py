"""The Airflow UI pages of the stack render for a logged-in user (headless Debian chromium).

Runs after test_stack.py (file order), on its runs: the DAG list, the run's grid, the
labelled map indexes of an extract task, the Trigger form and an extract batch's log.
"""

from __future__ import annotations

import requests
from screenshots import Browser, pages

DAG = "cbm_stack_test"
WINDOW = {"start": "2018-05-01", "end": "2018-06-01"}


def test_ui_pages_render_for_a_logged_in_user(stack, api, record):
    run = next(r for r in api.get(f"/dags/{DAG}/dagRuns")["dag_runs"] if r["conf"] == WINDOW)
    tis = sorted((t for t in api.task_instances(DAG, run["dag_run_id"]) if t["task_id"] == "s2_10m.extract"),
                 key=lambda t: t["map_index"])
    ti = tis[0]
    urls = pages(stack, DAG, run["dag_run_id"], ti["task_id"], ti["map_index"])
    token = api.token()
    assert requests.get(f"{stack.url}/api/v2/dags", timeout=30).status_code == 401   # a login is needed
    b = Browser()
    try:
        b.login(stack.url, token)
        for name, url in urls.items():
            r = requests.get(url, cookies={"_token": token}, timeout=30)
            assert r.status_code == 200, (name, r.status_code)
            b.goto(url)
            b.wait_text(DAG)
            assert DAG in b.dom(), name
            if name == "ui-mapped-labels":                  # the map indexes show their batch labels
                for t in tis:
                    b.wait_text(t["rendered_map_index"])
            if name == "ui-extract-log":                    # the log opens with the batch
                b.wait_text(f"batch {ti['rendered_map_index']}", timeout=90)
            if name == "ui-trigger-form":                   # the Params form: titles, exclusive end
                assert b.click_text("Trigger")
                b.wait_text("Window start", timeout=30)
                b.wait_text("exclusive")
        record("ui", {"pages": list(urls.values())})
    finally:
        b.close()


def test_parcel_viewer_in_the_api_server(stack, api, db, record):
    """The parcel viewer served by the api-server (/cbm/viewer/, Airflow's login) and as a page
    of the UI (Plugins -> CbM -> CbM parcel viewer): map drawn, a parcel clicked, its chart."""
    from pathlib import Path

    token = api.token()
    aoi = "stack_test"
    assert requests.get(f"{stack.url}/cbm/viewer/", timeout=30).status_code == 401       # Airflow's login
    # a parcel with a point in no other parcel, and its observations of the run's window
    pid, lon, lat = db.execute(
        f"""SELECT p.ogc_fid, ST_X(ST_Transform(pt, 4326)), ST_Y(ST_Transform(pt, 4326))
            FROM {aoi}.parcels p CROSS JOIN LATERAL (SELECT ST_PointOnSurface(p.wkb_geometry) AS pt) s
            WHERE (SELECT count(*) FROM {aoi}.parcels q WHERE ST_DWithin(q.wkb_geometry, s.pt, 3)) = 1
            ORDER BY ST_Area(p.wkb_geometry) DESC LIMIT 1""").fetchone()
    n_s2 = db.execute(f"""SELECT count(*) FROM {aoi}.parcel_observations WHERE pid = %s AND card = 's2'
                          AND 'B04' = ANY(bands) AND 'B08' = ANY(bands)""", (pid,)).fetchone()[0]
    n_s1 = db.execute(f"""SELECT count(*) FROM {aoi}.parcel_observations WHERE pid = %s AND card = 'bs'
                          AND 'VVb' = ANY(bands)""", (pid,)).fetchone()[0]
    assert n_s2 > 0 and n_s1 > 0
    b = Browser(1366, 768)
    try:
        b.login(stack.url, token)
        b.goto(f"{stack.url}/cbm/viewer/?aoi={aoi}")
        b.wait_for("window.cbmViewer && cbmViewer.ready && cbmViewer.map.areTilesLoaded() && "
                   "cbmViewer.map.queryRenderedFeatures({layers: ['parcels-fill']}).length > 0", 120)
        x, y = b.eval(f"""(() => {{ const m = cbmViewer.map, p = m.project([{lon}, {lat}]),
            r = m.getCanvas().getBoundingClientRect(); return [r.left + p.x, r.top + p.y]; }})()""")
        b.click_at(x, y)
        b.wait_for(f"cbmViewer.state.pid === {pid} && cbmViewer.chart && cbmViewer.chart.data.datasets.length > 0", 90)
        counts = b.eval("Object.fromEntries(cbmViewer.chart.data.datasets.map(d => [d.label, d.data.length]))")
        assert counts["NDVI cloud-free (SCL)"] + counts["NDVI cloudy (SCL 3, 8-11)"] == n_s2, counts
        assert counts["S1 VV (dB)"] == n_s1, counts
        out = Path(__file__).resolve().parent.parent / "stack-test-output"
        b.screenshot(out / "viewer-api-server.png")
        # the same page inside the Airflow UI (the plugin's page: an iframe of /cbm/viewer/ without
        # parameters), reopening the parcel this browser showed last
        b.goto(f"{stack.url}/plugin/cbm-viewer")
        b.wait_for("(() => { const f = document.querySelector('iframe'); const v = f && f.contentWindow && "
                   "f.contentWindow.cbmViewer; return v && v.ready && v.map.areTilesLoaded() && "
                   f"v.state.aoi === '{aoi}' && v.state.pid === {pid} && v.chart && "
                   "v.chart.data.datasets.length > 0; })()", 120)
        assert "/cbm/viewer/" in b.eval("document.querySelector('iframe').src")
        b.screenshot(out / "viewer-airflow-ui.png")
        record("viewer", {"pid": pid, "chart": counts})
    finally:
        b.close()
