"""The parcel viewer (plugins/cbm_api/viewer.py, cbm_ops/analyst/viewer.py, web/viewer) on the REAL sample.

Vector tiles are decoded with mapbox-vector-tile and checked against the database (parcels,
geometry, the canonical observations of the parcel_observations view, quarantined scenes);
the tile cache, its invalidation and the HTTP caching headers through the app; and the page
in headless Chromium (Debian package, DevTools protocol) with real mouse clicks, standalone
behind its login: map drawn, a parcel clicked, its chart drawn, the search, a chart date
clicked for its image chips.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import socket
import sys
import threading
import time
import uuid

import mapbox_vector_tile
import psycopg
import pytest
import yaml
from conftest import ROOT

sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "scripts")]
from cbm_api import create_app  # noqa: E402
from cbm_api import viewer as cbm_viewer  # noqa: E402

from cbm_ops.analyst import viewer  # noqa: E402
from cbm_ops.config import load_aoi  # noqa: E402
from cbm_ops.db import transaction  # noqa: E402
from cbm_ops.extract import run_queue  # noqa: E402
from cbm_ops.harvest import harvest  # noqa: E402
from cbm_ops.parcels import import_parcels  # noqa: E402

AOI = "viewer_sample"
YEAR = 2018
WINDOW = (dt.datetime(2018, 4, 1), dt.datetime(2018, 8, 1))
TOKEN = "test-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
USER, PASSWORD = "analyst", "pw-" + uuid.uuid4().hex[:8]        # the browser logs in with HTTP basic
HOLDER: dict = {}


@pytest.fixture(scope="module")
def sample(db_url, tmp_path_factory):
    """The demo AOI (real sample) in its own schema, four months harvested and extracted."""
    data = yaml.safe_load((ROOT / "include" / "aois" / "demo_flanders.yaml").read_text())
    schema = "t_viewer_" + uuid.uuid4().hex[:8]
    data.update(name=AOI, schema=schema, cards=["s2", "bs"])
    data["bands"].pop("c6")
    d = tmp_path_factory.mktemp("aois")
    (d / f"{AOI}.yaml").write_text(yaml.safe_dump(data))
    cfg = load_aoi(d / f"{AOI}.yaml")
    import_parcels(db_url, cfg)
    harvest(db_url, cfg, *WINDOW)
    for stage in cfg.stages:
        run_queue(db_url, cfg, stage)
    HOLDER.update(aois={AOI: cfg}, url=db_url)
    yield cfg
    HOLDER.clear()
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module")
def app(sample):
    return create_app(auth="standalone", tokens=[TOKEN], users={USER: PASSWORD}, aois=lambda: HOLDER["aois"],
                      db_url=lambda cfg: HOLDER["url"])


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


def expected_attributes(db_url, cfg) -> dict[int, dict]:
    """Per parcel, from the parcel_observations view (canonical observations) and the catalogue."""
    s = cfg.schema
    with psycopg.connect(db_url) as c:
        out = {pid: {"crop": crop, "s2_obs": 0, "s2_clear": 0, "last_clear": None, "quarantined": 0}
               for pid, crop in c.execute(f'SELECT ogc_fid, ct_name FROM "{s}".parcels')}
        for pid, n, clear, last in c.execute(
                f"""SELECT pid, count(*), count(*) FILTER (WHERE cloudfree), max(obstime) FILTER (WHERE cloudfree)
                    FROM "{s}".parcel_observations WHERE card = 's2' AND obstime >= %s AND obstime < %s
                    GROUP BY pid""", (dt.datetime(YEAR, 1, 1), dt.datetime(YEAR + 1, 1, 1))):
            out[pid].update(s2_obs=n, s2_clear=clear, last_clear=last.timetuple().tm_yday if last else None)
        for pid, n in c.execute(
                f"""SELECT p.ogc_fid, count(DISTINCT d.id) FROM "{s}".parcels p
                    JOIN "{s}".dias_catalogue d ON ST_Intersects(ST_Transform(d.footprint, 32631), p.wkb_geometry)
                    JOIN "{s}".scene_stages st ON st.obsid = d.id AND st.status = 'Quarantined'
                    WHERE d.obstime >= %s AND d.obstime < %s GROUP BY 1""",
                (dt.datetime(YEAR, 1, 1), dt.datetime(YEAR + 1, 1, 1))):
            out[pid]["quarantined"] = n
    return out


def decode(data: bytes) -> list[dict]:
    if not data:
        return []
    layers = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})
    assert set(layers) == {"parcels"} and layers["parcels"]["extent"] == 4096
    return layers["parcels"]["features"]


def tile_pids(db_url, cfg, z, x, y, margin: float) -> set[int]:
    with psycopg.connect(db_url) as c:
        return {r[0] for r in c.execute(
            f"""SELECT ogc_fid FROM "{cfg.schema}".parcels WHERE ST_Intersects(wkb_geometry,
                ST_Transform(ST_Segmentize(ST_TileEnvelope(%s, %s, %s, margin => %s), 1), 32631))""",
            (z, x, y, margin))}


def ring_area(ring) -> float:
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False))) / 2


# ----------------------------------------------------------------- tiles against the database
@pytest.mark.parametrize("live", [True, False], ids=["live", "summary"])
def test_tiles_hold_every_parcel_with_its_attributes(sample, db_url, live):
    """Live attributes and those of the year's summary both equal the parcel_observations view's."""
    cfg = sample
    want = expected_attributes(db_url, cfg)
    assert any(v["s2_obs"] for v in want.values()) and any(v["s2_clear"] for v in want.values())
    if not live:
        done = viewer.refresh_summary(db_url, cfg, YEAR)
        assert done["year"] == YEAR and done["parcels"] == sum(1 for v in want.values() if v["s2_obs"])
    with transaction(db_url) as conn:
        info = viewer.aoi_info(conn, cfg)
        assert (YEAR in info["summaries"]) is not live or not info["summaries"]
        seen: dict[int, dict] = {}
        for z in (14, 16):
            tiles = viewer.tiles_covering(info["bounds"], z)
            assert len(tiles) >= (1 if z == 14 else 2)
            for x, y in tiles:
                feats = decode(viewer.parcel_tile(conn, cfg, z, x, y, YEAR, live=live))
                pids = {f["properties"]["pid"] for f in feats}
                # the tile holds the parcels intersecting it (and its 64/4096 buffer), no others
                assert tile_pids(db_url, cfg, z, x, y, 0.0) - tile_pids(db_url, cfg, z, x, y, -0.002) <= pids or \
                    tile_pids(db_url, cfg, z, x, y, -0.002) <= pids
                assert pids <= tile_pids(db_url, cfg, z, x, y, 0.02), (z, x, y)
                for f in feats:
                    seen[f["properties"]["pid"]] = f["properties"]
            assert set(seen) == set(want), z
    for pid, props in seen.items():
        got = {k: props.get(k) for k in ("crop", "s2_obs", "s2_clear", "last_clear", "quarantined")}
        assert got == want[pid], pid


def test_tile_geometry_is_the_parcel(sample, db_url):
    """A parcel wholly inside one tile: its decoded rings have the parcel's web-mercator area."""
    cfg = sample
    with psycopg.connect(db_url) as c:
        pid, area, lon, lat = c.execute(
            f"""SELECT ogc_fid, ST_Area(ST_Transform(wkb_geometry, 3857)), ST_X(c), ST_Y(c)
                FROM "{cfg.schema}".parcels, ST_Transform(ST_Centroid(wkb_geometry), 4326) AS c
                WHERE ogc_fid = 1""").fetchone()
    with psycopg.connect(db_url) as c:      # the deepest tile that holds the whole parcel
        for z in range(17, 10, -1):
            x, y = viewer.lonlat_to_tile(lon, lat, z)
            if c.execute(f"""SELECT ST_Within(ST_Transform(wkb_geometry, 3857), ST_TileEnvelope(%s, %s, %s))
                             FROM "{cfg.schema}".parcels WHERE ogc_fid = 1""", (z, x, y)).fetchone()[0]:
                break
    with transaction(db_url) as conn:
        feats = [f for f in decode(viewer.parcel_tile(conn, cfg, z, x, y, YEAR)) if f["properties"]["pid"] == pid]
    assert len(feats) == 1
    g = feats[0]["geometry"]
    polys = g["coordinates"] if g["type"] == "MultiPolygon" else [g["coordinates"]]
    units = sum(ring_area(p[0]) - sum(ring_area(h) for h in p[1:]) for p in polys)
    tile_m = 2 * math.pi * 6378137 / 2 ** z
    assert units * (tile_m / 4096) ** 2 == pytest.approx(area, rel=0.01)


def test_tiles_through_the_app_are_cached_and_invalidated(client, sample, db_url, monkeypatch):
    cfg = sample
    info = wait_refreshed(client, cfg)
    v = info["tile_versions"][str(YEAR)]
    z = 16
    x, y = viewer.tiles_covering(info["bounds"], z)[0]
    path = f"/viewer/tiles/{YEAR}/{z}/{x}/{y}.pbf"
    r1 = client.get(path, params={"aoi": cfg.name, "v": v}, headers=AUTH)
    assert r1.status_code == 200 and r1.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert r1.headers["cache-control"] == "private, max-age=86400, immutable"
    r2 = client.get(path, params={"aoi": cfg.name, "v": v}, headers=AUTH)
    assert r2.headers["x-cbm-cache"] == "hit" and r2.content == r1.content
    assert client.get(path, params={"aoi": cfg.name}, headers={**AUTH, "If-None-Match": r1.headers["etag"]}
                      ).status_code == 304
    assert client.get(path, params={"aoi": cfg.name, "v": "old"}, headers=AUTH
                      ).headers["cache-control"] == "private, no-cache"
    feats = decode(r1.content)
    assert feats and all(f["properties"]["quarantined"] == 0 for f in feats)
    # a scene of the year is quarantined: a new results version, new tiles with it
    monkeypatch.setattr(cbm_viewer, "VERSION_TTL_S", 0.0)
    wait_refreshed(client, cfg)
    with psycopg.connect(db_url, autocommit=True) as c:
        obsid, stage, status = c.execute(
            f"""SELECT st.obsid, st.stage, st.status FROM "{cfg.schema}".scene_stages st
                JOIN "{cfg.schema}".dias_catalogue d ON d.id = st.obsid
                WHERE d.card = 's2' AND st.stage = 's2_20m' AND st.status = 'extracted'
                ORDER BY d.obstime LIMIT 1""").fetchone()
        c.execute(f'UPDATE "{cfg.schema}".scene_stages SET status = %s, updated_at = now() '
                  "WHERE obsid = %s AND stage = %s", ("Quarantined", obsid, stage))
    try:
        new = client.get("/viewer/api/aoi", params={"aoi": cfg.name}, headers=AUTH).json()
        assert new["version"] != info["version"]
        r3 = client.get(path, params={"aoi": cfg.name, "v": new["tile_versions"][str(YEAR)]}, headers=AUTH)
        assert r3.headers["x-cbm-cache"] == "miss" and r3.headers["etag"] != r1.headers["etag"]
        want = expected_attributes(db_url, cfg)
        got = {f["properties"]["pid"]: f["properties"]["quarantined"] for f in decode(r3.content)}
        assert got == {pid: want[pid]["quarantined"] for pid in got} and max(got.values()) == 1
    finally:
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute(f'UPDATE "{cfg.schema}".scene_stages SET status = %s, updated_at = now() '
                      "WHERE obsid = %s AND stage = %s", (status, obsid, stage))
    stats = client.get("/viewer/api/cache", headers=AUTH).json()
    assert stats["hits"] >= 1 and stats["tiles"] >= 2


def wait_refreshed(client, cfg, timeout: float = 60) -> dict:
    """The AOI's info once no summary refresh is running."""
    deadline = time.monotonic() + timeout
    while True:
        info = client.get("/viewer/api/aoi", params={"aoi": cfg.name}, headers=AUTH).json()
        if not info["refreshing"]:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.2)


def test_summary_is_refreshed_in_the_background_when_results_change(client, sample, db_url, monkeypatch):
    """A tile of a year whose summary is stale starts its refresh; meanwhile tiles keep the old
    summary, afterwards they carry the new values under a new tile version."""
    cfg = sample
    monkeypatch.setattr(cbm_viewer, "VERSION_TTL_S", 0.0)
    monkeypatch.setattr(cbm_viewer, "SUMMARY_INTERVAL_S", 0.0)
    viewer.refresh_summary(db_url, cfg, YEAR)
    info = wait_refreshed(client, cfg)
    assert info["summaries"][str(YEAR)]["version"] == info["version"]
    z = 16
    x, y = viewer.tiles_covering(info["bounds"], z)[0]
    path = f"/viewer/tiles/{YEAR}/{z}/{x}/{y}.pbf"
    before = {f["properties"]["pid"]: f["properties"] for f in decode(
        client.get(path, params={"aoi": cfg.name}, headers=AUTH).content)}
    # one S2 scene's histograms of the tile's parcels become cloudy (SYNTHETIC change of real rows)
    with psycopg.connect(db_url, autocommit=True) as c:
        obsid = c.execute(f"""SELECT h.obsid FROM "{cfg.schema}".hists h WHERE h.pid = ANY(%s)
                              AND NOT EXISTS (SELECT 1 FROM json_object_keys(h.hist) k
                                              WHERE k IN ('3', '8', '9', '10', '11'))
                              ORDER BY h.obsid LIMIT 1""", (list(before),)).fetchone()[0]
        saved = c.execute(f'SELECT pid, hist::text FROM "{cfg.schema}".hists WHERE obsid = %s', (obsid,)).fetchall()
        c.execute(f"""UPDATE "{cfg.schema}".hists SET hist = '{{"9": 30}}' WHERE obsid = %s""", (obsid,))
        c.execute(f'UPDATE "{cfg.schema}".scene_stages SET updated_at = now() WHERE obsid = %s', (obsid,))
    try:
        client.get(path, params={"aoi": cfg.name}, headers=AUTH)          # starts the refresh
        info2 = wait_refreshed(client, cfg)
        assert info2["version"] != info["version"] and info2["summaries"][str(YEAR)]["version"] == info2["version"]
        assert info2["tile_versions"][str(YEAR)] != info["tile_versions"][str(YEAR)]
        after = {f["properties"]["pid"]: f["properties"] for f in decode(
            client.get(path, params={"aoi": cfg.name, "v": info2["tile_versions"][str(YEAR)]}, headers=AUTH).content)}
        want = expected_attributes(db_url, cfg)
        assert {p: (a["s2_obs"], a["s2_clear"]) for p, a in after.items()} == \
            {p: (want[p]["s2_obs"], want[p]["s2_clear"]) for p in after}
        assert sum(a["s2_clear"] for a in after.values()) < sum(b["s2_clear"] for b in before.values())
    finally:
        with psycopg.connect(db_url, autocommit=True) as c:
            with c.cursor() as cur:
                cur.executemany(f'UPDATE "{cfg.schema}".hists SET hist = %s::json WHERE obsid = %s AND pid = %s',
                                [(h, obsid, p) for p, h in saved])
            c.execute(f'UPDATE "{cfg.schema}".scene_stages SET updated_at = now() WHERE obsid = %s', (obsid,))
        viewer.refresh_summary(db_url, cfg, YEAR)


def test_a_read_only_role_gets_live_tiles(sample, db_url):
    """Without the right to create the summary tables the refresh fails with the database's
    error, and tiles compute the attributes live: the same values."""
    cfg = sample
    role = "viewer_ro_" + uuid.uuid4().hex[:6]
    schema = "t_viewer_ro_" + uuid.uuid4().hex[:6]
    ro_cfg = cfg.model_copy(update={"schema_": schema})
    with psycopg.connect(db_url, autocommit=True) as c:     # a copy of the AOI's schema without summary tables
        c.execute(f'CREATE SCHEMA "{schema}"')
        for t in ("parcels", "dias_catalogue", "scene_stages", "aois"):
            c.execute(f'CREATE TABLE "{schema}".{t} AS SELECT * FROM "{cfg.schema}".{t}')
        for t in ("sigs", "hists"):
            c.execute(f'CREATE TABLE "{schema}".{t} (LIKE "{cfg.schema}".{t} INCLUDING ALL)')
            c.execute(f'INSERT INTO "{schema}".{t} SELECT * FROM "{cfg.schema}".{t}')
        c.execute(f"""SELECT Populate_Geometry_Columns('"{schema}".parcels'::regclass)""")
        from cbm_ops.db import q

        c.execute(q("schema_views", schema=schema))
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'ro'")
        c.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        c.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {role}')
    ro_url = psycopg.conninfo.make_conninfo(db_url, user=role, password="ro")
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            viewer.refresh_summary(ro_url, ro_cfg, YEAR)
        with transaction(ro_url) as conn:
            info = viewer.aoi_info(conn, ro_cfg)
            assert info["summaries"] == {}
            feats = [f for x, y in viewer.tiles_covering(info["bounds"], 14)
                     for f in decode(viewer.parcel_tile(conn, ro_cfg, 14, x, y, YEAR, live=True))]
        want = expected_attributes(db_url, cfg)
        assert {f["properties"]["pid"]: f["properties"]["s2_clear"] for f in feats} == \
            {p: v["s2_clear"] for p, v in want.items()}
    finally:
        from cbm_ops.db import pool

        pool(ro_url).close()
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute(f'DROP SCHEMA "{schema}" CASCADE')
            c.execute(f"DROP ROLE {role}")


def test_aoi_info_and_bad_input(client, sample, db_url):
    cfg = sample
    info = client.get("/viewer/api/aoi", params={"aoi": cfg.name}, headers=AUTH).json()
    with psycopg.connect(db_url) as c:
        crops = c.execute(f'SELECT ct_name, count(*) FROM "{cfg.schema}".parcels '
                          "GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
        years = c.execute(f"""SELECT trim(card), count(*) FROM "{cfg.schema}".dias_catalogue
                              WHERE obstime >= '2018-01-01' AND obstime < '2019-01-01' GROUP BY 1""").fetchall()
        inside = c.execute(f"""SELECT bool_and(ST_Within(ST_Transform(wkb_geometry, 4326),
                                   ST_MakeEnvelope(%s, %s, %s, %s, 4326))) FROM "{cfg.schema}".parcels""",
                           [v + d for v, d in zip(info["bounds"], (-1e-6, -1e-6, 1e-6, 1e-6), strict=True)]
                           ).fetchone()[0]
    assert [(x["value"], x["parcels"]) for x in info["crops"]] == [tuple(r) for r in crops]
    assert {k: v["scenes"] for k, v in info["years"]["2018"].items()} == dict(years)
    assert info["year"] == 2018 and info["parcels"] == 20 and info["min_zoom"] == 0 and inside
    assert info["bands"] == {"s2": ["B02", "B03", "B04", "B08", "B05", "B11"], "bs": ["VVb", "VHb"]}
    assert info["background"] is None and set(info["attributes"]) == set(viewer.ATTRIBUTES)
    outline = client.get("/viewer/api/outline", params={"aoi": cfg.name}, headers=AUTH).json()
    assert outline["type"] == "MultiPolygon"
    bad = [(f"/viewer/tiles/{YEAR}/23/0/0.pbf?aoi={cfg.name}", 400, "z"),
           (f"/viewer/tiles/{YEAR}/3/8/0.pbf?aoi={cfg.name}", 400, "x"),
           (f"/viewer/tiles/1990/3/0/0.pbf?aoi={cfg.name}", 400, "year"),
           (f"/viewer/tiles/{YEAR}/3/0/0.pbf?aoi=nope", 404, "nope"),
           (f"/viewer/tiles/{YEAR}/3/0/0.pbf?aoi=x'%3B DROP TABLE sigs%3B --", 400, "aoi"),
           ("/viewer/api/aoi?aoi=1 OR 1=1", 400, "aoi")]
    for path, code, word in bad:
        r = client.get(path, headers=AUTH)
        assert r.status_code == code and word in r.json()["detail"], (path, r.status_code, r.text)
    # a large AOI: tiles below its minimum parcel zoom are refused
    big = cfg.model_copy(update={"viewer": cfg.viewer.model_copy(update={"small_aoi_parcels": 10})})
    HOLDER["aois"] = {AOI: big}
    try:
        assert client.get("/viewer/api/aoi", params={"aoi": AOI}, headers=AUTH).json()["min_zoom"] == 12
        r = client.get(f"/viewer/tiles/{YEAR}/11/1000/600.pbf?aoi={AOI}", headers=AUTH)
        assert r.status_code == 400 and "zoom 12" in r.json()["detail"]
    finally:
        HOLDER["aois"] = {AOI: cfg}


def test_viewer_needs_login_and_a_build(client, sample, monkeypatch, tmp_path):
    assert client.get("/viewer/").status_code == 401
    assert client.get(f"/viewer/tiles/{YEAR}/16/0/0.pbf?aoi={AOI}").status_code == 401
    assert client.get("/viewer", headers=AUTH, follow_redirects=False).headers["location"] == "viewer/"
    monkeypatch.setenv("CBM_VIEWER_DIST", str(tmp_path))
    r = client.get("/viewer/", headers=AUTH)
    assert r.status_code == 503 and "make viewer" in r.text
    assert client.get("/viewer/assets/../../cbm_api.py", headers=AUTH).status_code == 404


# ----------------------------------------------------------------- the page in headless Chromium
@pytest.fixture(scope="module")
def server(app):
    import uvicorn

    if not (cbm_viewer.dist_dir() / "index.html").is_file():
        pytest.fail(f"the viewer is not built ({cbm_viewer.dist_dir()}): run `make viewer`")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield port
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(server, sample):
    from screenshots import Browser

    b = Browser(1366, 768)
    b.basic_auth(USER, PASSWORD)          # what the user types into the browser's login dialog
    yield b
    b.close()


def login_url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def screen_point(b, lon: float, lat: float) -> tuple[float, float]:
    """Viewport pixel of a lon/lat on the map."""
    return tuple(b.eval(f"""(() => {{ const m = cbmViewer.map, p = m.project([{lon}, {lat}]),
        r = m.getCanvas().getBoundingClientRect(); return [r.left + p.x, r.top + p.y]; }})()"""))


def chart_counts(b) -> dict[str, int]:
    return b.eval("Object.fromEntries(cbmViewer.chart.data.datasets.map(d => [d.label, d.data.length]))")


def test_page_map_click_chart_and_search(page, server, sample, db_url, tmp_path):
    b, cfg = page, sample
    import requests

    assert requests.get(f"http://127.0.0.1:{server}/viewer/", timeout=10).status_code == 401
    b.goto(login_url(server, f"/viewer/?aoi={cfg.name}"))
    b.wait_for("window.cbmViewer && cbmViewer.ready && cbmViewer.map.loaded() && cbmViewer.map.areTilesLoaded() && "
               "cbmViewer.map.queryRenderedFeatures({layers: ['parcels-fill']}).length > 0", 90)
    # map drawn: the rendered parcels are the AOI's
    rendered = set(b.eval("[...new Set(cbmViewer.map.queryRenderedFeatures({layers: ['parcels-fill']})"
                          ".map(f => f.properties.pid))]"))
    with psycopg.connect(db_url) as c:
        pids = {r[0] for r in c.execute(f'SELECT ogc_fid FROM "{cfg.schema}".parcels')}
        # a parcel with a point that lies in no other parcel (the LPIS parcel lies in a region)
        pid, lon, lat = c.execute(
            f"""SELECT p.ogc_fid, ST_X(ST_Transform(pt, 4326)), ST_Y(ST_Transform(pt, 4326))
                FROM "{cfg.schema}".parcels p CROSS JOIN LATERAL (SELECT ST_PointOnSurface(p.wkb_geometry) AS pt) s
                WHERE (SELECT count(*) FROM "{cfg.schema}".parcels q WHERE ST_DWithin(q.wkb_geometry, s.pt, 3)) = 1
                  AND p.ct_name = 'Maize'
                ORDER BY ST_Area(p.wkb_geometry) DESC LIMIT 1""").fetchone()
    assert rendered and rendered <= pids and len(rendered) >= len(pids) // 2, rendered
    assert b.eval("document.getElementById('legend').innerText").startswith("crop")
    # a real click on the parcel selects it and draws its time series
    b.click_at(*screen_point(b, lon, lat))
    b.wait_for(f"cbmViewer.state.pid === {pid} && cbmViewer.chart && "
               "cbmViewer.chart.data.datasets.length > 0", 60)
    counts = chart_counts(b)
    with psycopg.connect(db_url) as c:
        clear, cloudy = c.execute(
            f"""SELECT count(*) FILTER (WHERE cloudfree), count(*) FILTER (WHERE NOT cloudfree)
                FROM "{cfg.schema}".parcel_observations WHERE pid = %s AND card = 's2' AND 'B04' = ANY(bands)
                  AND 'B08' = ANY(bands)""", (pid,)).fetchone()
        s1 = c.execute(f"""SELECT count(*) FROM "{cfg.schema}".parcel_observations WHERE pid = %s AND card = 'bs'
                           AND 'VVb' = ANY(bands)""", (pid,)).fetchone()[0]
        maize = {r[0] for r in c.execute(f"SELECT ogc_fid FROM \"{cfg.schema}\".parcels WHERE ct_name = 'Maize'")}
    # the peers the API gives (same crop within 1 km, every size: min_area 0), highlighted on the map
    peers = set(requests.get(f"http://127.0.0.1:{server}/query/parcelPeers", auth=(USER, PASSWORD), timeout=30,
                             params={"aoi": cfg.name, "pid": pid, "distance": 1000, "max": 50,
                                     "min_area": 0}).json()["pids"])
    assert counts["NDVI cloud-free (SCL)"] == clear and counts["NDVI cloudy (SCL 3, 8-11)"] == cloudy
    assert counts["S1 VV (dB)"] == s1 and clear + cloudy > 0 and s1 > 0
    b.wait_for("document.getElementById('chart').getBoundingClientRect().height > 200")
    assert set(b.eval("cbmViewer.state.peers")) == peers and peers and peers <= maize - {pid}
    assert set(b.eval("cbmViewer.map.getFilter('peers-line')[2][1]")) == peers
    assert b.eval("document.getElementById('parcel').innerText").startswith(f"Parcel {pid} · Maize")
    # the band series: mean with its p25-p75 band
    b.eval("(() => { const s = document.getElementById('series'); s.value = 's2:B04'; "
           "s.dispatchEvent(new Event('change')); })()")
    band = chart_counts(b)
    assert band["p25"] == band["p25-p75 of the parcel's pixels"] == clear + cloudy
    b.eval("(() => { const s = document.getElementById('series'); s.value = 'ndvi'; "
           "s.dispatchEvent(new Event('change')); })()")
    # hovering a date shows its lineage
    x, y = b.eval("""(() => { const c = cbmViewer.chart, el = c.getDatasetMeta(0).data[0],
        r = c.canvas.getBoundingClientRect(); return [r.left + el.x, r.top + el.y]; })()""")
    b.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    b.wait_for("document.getElementById('lineage').innerText.includes('lineage: cbm-airflow')", 20)
    # search by id: type it, press Show
    other = min(pids - {pid})
    b.eval("document.getElementById('pid').focus(); document.getElementById('pid').select()")
    b.type_text(str(other))
    bx, by = b.eval("(() => { const r = document.querySelector('#search button').getBoundingClientRect(); "
                    "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    b.click_at(bx, by)
    b.wait_for(f"cbmViewer.state.pid === {other} && "
               f"document.getElementById('parcel').innerText.startsWith('Parcel {other}')", 60)
    assert f"pid={other}" in b.eval("location.search")
    b.screenshot(tmp_path / "viewer.png")


def test_page_opens_a_parcel_from_the_url_and_shows_chips(page, server, app, sample):
    """?aoi=&pid= opens the parcel; a click on a date of the chart shows its image chips (the
    JRC chip routes of the API)."""
    b, cfg = page, sample
    b.goto(login_url(server, f"/viewer/?aoi={cfg.name}&pid=1"))
    b.wait_for("window.cbmViewer && cbmViewer.ready && cbmViewer.state.pid === 1 && cbmViewer.chart && "
               "cbmViewer.chart.data.datasets.length > 0", 90)
    assert b.eval("cbmViewer.map.queryRenderedFeatures({layers: ['selected-line']}).length") > 0
    routes = {getattr(r, "path", "") for r in app.routes}
    if "/query/chipsByLocation" not in routes:
        pytest.skip("the API has no JRC chip routes yet (issue 17): the chip panel is wired to "
                    "/query/chipsByLocation and waits for them")
    x, y = b.eval("""(() => { const c = cbmViewer.chart, el = c.getDatasetMeta(0).data[0],
        r = c.canvas.getBoundingClientRect(); return [r.left + el.x, r.top + el.y]; })()""")
    b.click_at(x, y)
    b.wait_for("document.querySelectorAll('#chips .chip img').length > 0 && "
               "[...document.querySelectorAll('#chips .chip img')].every(i => i.complete && i.naturalWidth > 0)", 60)
    obsid = b.eval("cbmViewer.chart.data.datasets[0].data[0].obs.obsid")
    assert b.eval("document.querySelector('#chips .chip').dataset.obsid") == str(obsid)
    json.dumps(obsid)
