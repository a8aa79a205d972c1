"""The parcel API (plugins/cbm_api.py) on the REAL bundled sample, extracted for two months.

Schemathesis drives every operation from the app's own OpenAPI schema (in-process ASGI);
explicit cases cover the JRC response shape against direct SQL, SQL-injection strings,
400s, authentication, CSV, the PNG plot, lineage, the standalone uvicorn mode, and that the
time-series queries are index-served also on partitioned sigs/hists.
"""

from __future__ import annotations

import atexit
import csv
import datetime as dt
import io
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from urllib.parse import quote

import psycopg
import psycopg.sql
import pytest
import schemathesis
import yaml
from conftest import ROOT
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(ROOT / "plugins"))
from cbm_api import create_app  # noqa: E402

from cbm_ops import analyst  # noqa: E402
from cbm_ops.config import AoiConfig, ApiSettings, load_aoi  # noqa: E402
from cbm_ops.db import ensure_schema, transaction  # noqa: E402
from cbm_ops.extract import run_queue  # noqa: E402
from cbm_ops.harvest import harvest  # noqa: E402
from cbm_ops.parcels import import_parcels  # noqa: E402

TOKEN = "test-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WINDOW = (dt.datetime(2018, 5, 15), dt.datetime(2018, 7, 15))
INJECTIONS = ["x'; DROP TABLE sigs; --", "1 OR 1=1", "1; SELECT pg_sleep(5)", "' UNION SELECT * FROM aois --",
              "demo_flanders\"; DROP SCHEMA public CASCADE; --", "\x00", "%27%3B", "B04') OR ('1'='1"]


AOI = "api_sample"
HOLDER: dict = {}           # filled by the sample_aoi fixture; the app reads it per request
CHIPS_DIR = tempfile.mkdtemp(prefix="cbm-test-chips-")        # not the host's shared chip cache
atexit.register(shutil.rmtree, CHIPS_DIR, True)
APP = create_app(auth="standalone", tokens=[TOKEN], users={"ana": "s3cret:,x"},
                 aois=lambda: HOLDER["aois"], db_url=lambda cfg: HOLDER["url"],
                 settings=ApiSettings.from_env({"CBM_CHIPS_DIR": CHIPS_DIR}))


@pytest.fixture(scope="module")
def sample_aoi(db_url, tmp_path_factory):
    """The demo AOI (real sample) in its own schema, two months harvested and extracted."""
    data = yaml.safe_load((ROOT / "include" / "aois" / "demo_flanders.yaml").read_text())
    schema = "t_api_" + uuid.uuid4().hex[:8]
    data.update(name=AOI, schema=schema, cards=["s2", "bs"])
    d = tmp_path_factory.mktemp("aois")
    (d / f"{AOI}.yaml").write_text(yaml.safe_dump(data))
    cfg = load_aoi(d / f"{AOI}.yaml")
    import_parcels(db_url, cfg)
    harvest(db_url, cfg, *WINDOW)
    for stage in cfg.stages:
        run_queue(db_url, cfg, stage)
    HOLDER.update(aois={AOI: cfg}, url=db_url)
    yield cfg, d
    HOLDER.clear()
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module")
def app(sample_aoi):
    return APP


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


def get(client, path, **params):
    return client.get(path, params=params, headers=AUTH)


# ----------------------------------------------------------------- schemathesis
def _schema():
    from schemathesis.config import SchemathesisConfig

    config = SchemathesisConfig.from_dict({
        "headers": AUTH,
        "parameters": {"aoi": AOI},
        "generation": {"max-examples": 30},
        # 400 is right for schema-valid input that the schema cannot rule out: a band of another
        # tstype, a polygon string that is no WKT/GeoJSON or is too large, a date string that is
        # no date, a chip size above CBM_CHIPS_MAX_SIZE_M, more chips than allowed, a viewer tile outside
        # its zoom's pyramid
        "operations": [{"include-path-regex":
                        "parcelTimeSeries|parcelsByPolygon|parcelByPolygon|[cC]hip|background|viewer/tiles",
                        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404"]}}}],
    })
    return schemathesis.openapi.from_asgi("/openapi.json", APP, config=config)   # reads only the schema


SCHEMA = _schema()


@SCHEMA.hook
def map_query(ctx, query):
    # valid pids are mapped onto the sample's parcels (1..20) and a few unknown ones, years onto
    # the AOI's campaign (2017, 2018: the JRC datasets; others are a 404), ptypes onto none (the
    # sample AOI configures none: a 404)
    if query and isinstance(query.get("pid"), int) and 0 <= query["pid"] <= 2**31 - 1:
        query["pid"] = query["pid"] % 24 + 1
    if query and isinstance(query.get("year"), int):
        query["year"] = 2017 + query["year"] % 2
    if query and "ptype" in query:
        query["ptype"] = ""
    return query


@SCHEMA.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_every_operation(case, sample_aoi):
    case.call_and_validate(headers=AUTH)


# ----------------------------------------------------------------- shape and values
def test_time_series_matches_the_database(client, sample_aoi, db_url):
    cfg, _ = sample_aoi
    r = get(client, "/query/parcelTimeSeries", aoi=cfg.name, pid=1, tstype="s2", year=2018)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    ts = r.json()
    lengths = {len(v) for v in ts.values()}
    assert len(lengths) == 1 and lengths.pop() > 0
    with psycopg.connect(db_url) as c:     # the README's query; the sample has one granule per date
        rows = c.execute(f"""SELECT d.obstime, d.id, trim(s.band), s.count, s.mean, s.p50 FROM "{cfg.schema}".sigs s
                             JOIN "{cfg.schema}".dias_catalogue d ON d.id = s.obsid
                             WHERE s.pid = 1 AND d.card = 's2' ORDER BY 1, 3""").fetchall()
        hists = dict(c.execute(f'SELECT obsid, hist FROM "{cfg.schema}".hists WHERE pid = 1'))
    got = list(zip(ts["obstime"], ts["obsid"], ts["band"], ts["count"], ts["mean"], ts["p50"], strict=True))
    assert got == [(t.isoformat(), o, b, n, pytest.approx(m), pytest.approx(p)) for t, o, b, n, m, p in rows]
    assert ts["date_part"][0] == (rows[0][0] - dt.datetime(1970, 1, 1)).total_seconds()
    for obsid, clear in zip(ts["obsid"], ts["cloudfree"], strict=True):
        assert clear == (not set(hists[obsid]) & {"3", "8", "9", "10", "11"})
    i4 = [i for i, b in enumerate(ts["band"]) if b == "B04"]
    i8 = [i for i, b in enumerate(ts["band"]) if b == "B08"]
    for a, b in zip(i4, i8, strict=True):
        m4, m8 = ts["mean"][a], ts["mean"][b]
        assert ts["ndvi"][a] == pytest.approx((m8 - m4) / (m8 + m4), abs=1e-6)
    # band filter, S1, SCL, CSV
    only = get(client, "/query/parcelTimeSeries", aoi=cfg.name, pid=1, band=["B04", "B08"]).json()
    assert set(only["band"]) == {"B04", "B08"} and len(only["band"]) == len(i4) * 2
    bs = get(client, "/query/parcelTimeSeries", aoi=cfg.name, pid=1, tstype="bs").json()
    assert set(bs["band"]) == {"VVb", "VHb"} and set(bs["orbit_direction"]) == {"ASCENDING"}
    scl = get(client, "/query/parcelTimeSeries", aoi=cfg.name, pid=1, tstype="scl").json()
    assert [json.dumps(h, sort_keys=True) for h in scl["hist"]] == \
        [json.dumps(hists[o], sort_keys=True) for o in scl["obsid"]]
    text = get(client, "/query/parcelTimeSeries", aoi=cfg.name, pid=1, format="csv")
    assert text.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(text.text)))
    assert [r["band"] for r in table] == ts["band"] and [float(r["mean"]) for r in table] == ts["mean"]
    assert [r["cloudfree"] for r in table] == [str(v) for v in ts["cloudfree"]]


def test_parcel_queries(client, sample_aoi, db_url):
    cfg, _ = sample_aoi
    p = get(client, "/query/parcelById", aoi=cfg.name, pid=1, withGeometry=True).json()
    assert p["ogc_fid"] == [1] and p["crop"] == ["Maize"] and p["srid"] == [32631]
    assert p["area"][0] == pytest.approx(p["area_m2"][0], rel=0.005)   # geodesic vs the file's planar area
    geom = json.loads(p["geom"][0])
    assert geom["crs"]["properties"]["name"] == "EPSG:32631" and geom["type"] == "MultiPolygon"
    p84 = get(client, "/query/parcelById", aoi=cfg.name, pid=1, withGeometry=True, crs="4326").json()
    lon, lat = json.loads(p84["geom"][0])["coordinates"][0][0][0]
    assert 2.9 < lon < 3.1 and 50.7 < lat < 50.9 and "crs" not in json.loads(p84["geom"][0])
    at = get(client, "/query/parcelByLocation", aoi=cfg.name, lon=p["clon"][0], lat=p["clat"][0]).json()
    assert 1 in at["ogc_fid"]                      # the LPIS parcel lies inside a polygonised region
    assert get(client, "/query/parcelByLocation", aoi=cfg.name, lon=10.0, lat=10.0).json()["ogc_fid"] == []
    poly = (f"POLYGON(({p['clon'][0] - 0.001} {p['clat'][0] - 0.001}, {p['clon'][0] + 0.001} {p['clat'][0] - 0.001},"
            f" {p['clon'][0] + 0.001} {p['clat'][0] + 0.001}, {p['clon'][0] - 0.001} {p['clat'][0] + 0.001},"
            f" {p['clon'][0] - 0.001} {p['clat'][0] - 0.001}))")
    r = get(client, "/query/parcelsByPolygon", aoi=cfg.name, polygon=poly)
    with psycopg.connect(db_url) as c:
        expect = [x[0] for x in c.execute(
            f'SELECT ogc_fid FROM "{cfg.schema}".parcels WHERE ST_Intersects(wkb_geometry, '
            'ST_Transform(ST_GeomFromText(%s, 4326), 32631)) ORDER BY 1', (poly,))]
    assert r.json()["ogc_fid"] == expect and 1 in expect and r.headers["x-cbm-truncated"] == "false"
    gj = json.dumps({"type": "Polygon", "coordinates": [[[float(v) for v in xy.split()] for xy in
                                                         poly[9:-2].split(",")]]})
    assert get(client, "/query/parcelsByPolygon", aoi=cfg.name, polygon=gj).json()["ogc_fid"] == expect
    capped = get(client, "/query/parcelsByPolygon", aoi=cfg.name, polygon=poly, max=1)
    assert capped.json()["ogc_fid"] == expect[:1] and capped.headers["x-cbm-truncated"] == ("true" if len(expect) > 1
                                                                                            else "false")
    peers = get(client, "/query/parcelPeers", aoi=cfg.name, pid=1, distance=5000, max=100, min_area=0).json()
    with psycopg.connect(db_url) as c:
        maize = dict(c.execute(
            f"""SELECT q.ogc_fid, ST_Area(ST_Transform(q.wkb_geometry, 4326)::geography)
                FROM "{cfg.schema}".parcels p, "{cfg.schema}".parcels q
                WHERE p.ogc_fid = 1 AND q.ogc_fid <> 1 AND q.ct_name = p.ct_name
                  AND ST_Distance(ST_Transform(p.wkb_geometry, 4326)::geography,
                                  ST_Transform(q.wkb_geometry, 4326)::geography) <= 5000""").fetchall())
    assert sorted(peers["pids"]) == sorted(maize) and len(maize) > 0
    assert peers["distance"] == sorted(peers["distance"])
    # the JRC's default: peers of at most 3,000 m2 left out (parcel 19, 2,400 m2, here)
    jrc = get(client, "/query/parcelPeers", aoi=cfg.name, pid=1, distance=5000, maxPeers=100).json()
    assert sorted(jrc["pids"]) == sorted(p for p, a in maize.items() if a > 3000) != sorted(maize)
    near = get(client, "/query/parcelPeers", aoi=cfg.name, pid=1, distance=10, max=100, min_area=0).json()
    assert all(d <= 10 for d in near["distance"]) and set(near["pids"]) <= set(peers["pids"])


def test_infinite_statistics_and_clashing_attribute_names(client, sample_aoi, db_url):
    """A stored +inf (not JSON) is served as null, not a 500; a parcel attribute called
    like a computed column (``area``) keeps its value under ``attr_area``."""
    cfg, _ = sample_aoi
    sql = psycopg.sql
    tbl = sql.Identifier(cfg.schema, cfg.parcels.table)
    with psycopg.connect(db_url) as c:
        obsid, band, old = c.execute(f'SELECT obsid, band, max FROM "{cfg.schema}".sigs WHERE pid = 1 '
                                     "AND band = 'VVb' ORDER BY obsid LIMIT 1").fetchone()
        c.execute(f'UPDATE "{cfg.schema}".sigs SET max = %s WHERE pid = 1 AND obsid = %s AND band = %s',
                  (float("inf"), obsid, band))
        c.execute(sql.SQL("ALTER TABLE {} ADD COLUMN area text DEFAULT 'declared 1.5 ha'").format(tbl))
    try:
        r = get(client, "/query/parcelTimeSeries", aoi=cfg.name, pid=1, tstype="bs")
        assert r.status_code == 200, r.text
        ts = r.json()
        at = [i for i, (o, b) in enumerate(zip(ts["obsid"], ts["band"], strict=True)) if (o, b) == (obsid, "VVb")]
        assert [ts["max"][i] for i in at] == [None] and ts["mean"][at[0]] is not None
        p = get(client, "/query/parcelById", aoi=cfg.name, pid=1).json()
        assert p["attr_area"] == ["declared 1.5 ha"] and p["area"][0] == pytest.approx(p["area_m2"][0], rel=0.005)
    finally:
        with psycopg.connect(db_url) as c:
            c.execute(f'UPDATE "{cfg.schema}".sigs SET max = %s WHERE pid = 1 AND obsid = %s AND band = %s',
                      (old, obsid, band))
            c.execute(sql.SQL("ALTER TABLE {} DROP COLUMN area").format(tbl))


def test_a_crop_column_missing_from_the_parcel_table_is_a_clear_400(sample_aoi, db_url):
    cfg, _ = sample_aoi
    wrong = cfg.model_copy(update={"parcels": cfg.parcels.model_copy(update={"crop_column": "gewas"})})
    from cbm_ops.db import transaction

    with transaction(db_url) as conn, pytest.raises(analyst.BadRequest, match="'gewas' is not a column"):
        analyst.parcel_peers(conn, wrong, 1)


def test_plot_endpoint_writes_a_png(client, sample_aoi, tmp_path):
    cfg, _ = sample_aoi
    r = client.get("/query/parcelPlot", params=[("aoi", cfg.name), ("pid", 1), ("pid", 5)], headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    path = tmp_path / "plot.png"
    path.write_bytes(r.content)
    img = imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 400
    assert (img[..., :3].std(axis=(0, 1)) > 0.05).any()          # not a blank image
    assert get(client, "/query/parcelPlot", aoi=cfg.name, pid=999).status_code == 404


def test_lineage_and_observation(client, sample_aoi, db_url):
    cfg, _ = sample_aoi
    ts = get(client, "/query/parcelTimeSeries", aoi=cfg.name, pid=1, lineage=True).json()
    # every row carries the lineage its extraction recorded on the scene stage of its band
    with psycopg.connect(db_url) as c:
        stored = {(o, st): lin for o, st, lin in c.execute(
            f'SELECT obsid, stage, lineage FROM "{cfg.schema}".scene_stages')}
    stage_of = {b: st for st in ("s2_10m", "s2_20m") for b in cfg.bands[st]}
    for o, b, v in zip(ts["obsid"], ts["band"], ts["lineage"], strict=True):
        assert v == stored[(o, stage_of[b])] and v["bands"] == list(cfg.bands[stage_of[b]]), (o, b)
        assert v["package_version"] and v["index_version"] and v["catalogue_source"]
    obsid = ts["obsid"][0]
    # an old row without lineage (written before it was recorded) is served as null
    with psycopg.connect(db_url) as c:
        c.execute(f"""UPDATE "{cfg.schema}".scene_stages SET lineage = NULL WHERE obsid = %s AND stage = 's2_20m'""",
                  (obsid,))
    ts = get(client, "/query/parcelTimeSeries", aoi=cfg.name, pid=1, lineage=True).json()
    for o, b, v in zip(ts["obsid"], ts["band"], ts["lineage"], strict=True):
        assert (v is None) == (o == obsid and stage_of[b] == "s2_20m"), (o, b)
    rec = get(client, "/query/observation", aoi=cfg.name, obsid=obsid).json()
    assert rec["obsid"] == obsid and rec["card"] == "s2"
    assert rec["stages"]["s2_10m"]["lineage"] == stored[(obsid, "s2_10m")]
    assert rec["stages"]["s2_20m"]["lineage"] is None
    assert rec["footprint"]["type"] == "MultiPolygon"
    assert get(client, "/query/observation", aoi=cfg.name, obsid=10**8).status_code == 404


# ----------------------------------------------------------------- bad input and injection
@pytest.mark.parametrize("path,params,param", [
    ("/query/parcelTimeSeries", {"pid": "abc"}, "pid"),
    ("/query/parcelTimeSeries", {"pid": -1}, "pid"),
    ("/query/parcelTimeSeries", {"pid": 2**31}, "pid"),
    ("/query/parcelTimeSeries", {"pid": 1, "tstype": "s3"}, "tstype"),
    ("/query/parcelTimeSeries", {"pid": 1, "tstype": "bs", "band": "B04"}, "band"),
    ("/query/parcelTimeSeries", {"pid": 1, "tstype": "scl", "band": "B04"}, "band"),
    ("/query/parcelTimeSeries", {"pid": 1, "band": "B4"}, "band"),
    ("/query/parcelTimeSeries", {"pid": 1, "year": 1990}, "year"),
    ("/query/parcelTimeSeries", {"pid": 1, "format": "xml"}, "format"),
    ("/query/parcelById", {"pid": 1, "crs": "3857"}, "crs"),
    ("/query/parcelById", {"pid": 1, "ptype": "g;--"}, "ptype"),
    ("/query/parcelByLocation", {"lon": 200, "lat": 50}, "lon"),
    ("/query/parcelByLocation", {"lon": 3, "lat": "nan"}, "lat"),
    ("/query/parcelsByPolygon", {"polygon": "POLYGON((0 0, 1 1))"}, "polygon"),
    ("/query/parcelsByPolygon", {"polygon": "POINT(3 50)"}, "polygon"),
    ("/query/parcelsByPolygon", {"polygon": "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"}, "polygon"),   # self-crossing
    ("/query/parcelsByPolygon", {"polygon": "POLYGON((2 50, 4 50, 4 52, 2 52, 2 50))"}, "polygon"),  # too large
    ("/query/parcelsByPolygon", {"polygon": "POLYGON((500000 5600000, 500100 5600000, 500100 5600100, "
                                            "500000 5600000))"}, "polygon"),                   # not lon/lat
    ("/query/parcelsByPolygon", {"polygon": '{"type": "Polygon"'}, "polygon"),
    ("/query/parcelsByPolygon", {"polygon": "CURVEPOLYGON(CIRCULARSTRING(3 50, 3.01 50, 3 50))"}, "polygon"),
    ("/query/parcelsByPolygon", {"polygon": json.dumps({
        "type": "Polygon", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
        "coordinates": [[[333958, 6446276], [335071, 6446276], [335071, 6447000], [333958, 6446276]]]})}, "polygon"),
    ("/query/parcelsByPolygon", {"polygon": "POLYGON((3 50, 3.01 50, 3.01 50.01, 3 50))", "max": 1001}, "max"),
    ("/query/parcelPeers", {"pid": 1, "distance": 5001}, "distance"),
    ("/query/parcelPeers", {"pid": 1, "distance": 0}, "distance"),
    ("/query/parcelPeers", {"pid": 1, "max": 101}, "max"),
    ("/query/parcelPlot", {}, "pid"),
])
def test_bad_input_is_a_400_naming_the_parameter(client, sample_aoi, path, params, param):
    cfg, _ = sample_aoi
    r = get(client, path, aoi=cfg.name, **params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert isinstance(body["detail"], str) and param in body["detail"], body


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_strings_are_rejected_and_change_nothing(client, sample_aoi, db_url, value):
    cfg, _ = sample_aoi

    def state():
        with psycopg.connect(db_url) as c:
            return c.execute(f'SELECT (SELECT count(*) FROM "{cfg.schema}".sigs), '
                             f'(SELECT count(*) FROM "{cfg.schema}".hists), '
                             f'(SELECT count(*) FROM "{cfg.schema}".parcels)').fetchone()

    before = state()
    for path, params in (("/query/parcelTimeSeries", {"aoi": value, "pid": 1}),
                         ("/query/parcelTimeSeries", {"aoi": cfg.name, "pid": value}),
                         ("/query/parcelTimeSeries", {"aoi": cfg.name, "pid": 1, "band": value}),
                         ("/query/parcelTimeSeries", {"aoi": cfg.name, "pid": 1, "tstype": value}),
                         ("/query/parcelsByPolygon", {"aoi": cfg.name, "polygon": value}),
                         ("/query/parcelsByPolygon", {"aoi": cfg.name, "polygon": f"POLYGON((3 50, 3.01 50, 3.01 "
                                                                                  f"50.01, 3 50)){value}"}),
                         ("/query/parcelById", {"aoi": cfg.name, "pid": 1, "crs": value}),
                         ("/query/parcelPeers", {"aoi": cfg.name, "pid": 1, "distance": value}),
                         ("/aois/" + quote(value, safe=""), {})):
        r = get(client, path, **params)
        assert r.status_code in (400, 404), (path, params, r.status_code, r.text)
        assert "detail" in r.json()
    assert state() == before and before[0] > 0


def test_parameterised_values_with_quotes_round_trip(db_url, db_schema):
    """A crop value and attribute with quotes (SYNTHETIC) are data, not SQL."""
    ensure_schema(db_url, db_schema)
    with psycopg.connect(db_url) as c:
        c.execute(f'CREATE TABLE "{db_schema}".parcels (ogc_fid integer PRIMARY KEY, crop text, note text, '
                  'wkb_geometry geometry(Polygon, 32631))')
        c.execute(f"""INSERT INTO "{db_schema}".parcels VALUES
            (1, $$o'neil"; DROP TABLE x; --$$, 'it''s', ST_MakeEnvelope(500000, 5600000, 500100, 5600100, 32631)),
            (2, $$o'neil"; DROP TABLE x; --$$, 'b', ST_MakeEnvelope(500150, 5600000, 500250, 5600100, 32631)),
            (3, 'other', 'c', ST_MakeEnvelope(500300, 5600000, 500400, 5600100, 32631))""")
    cfg = AoiConfig(name="quotes", schema=db_schema, start_date=dt.date(2023, 1, 1),
                    parcels={"crop_column": "crop"})
    with transaction(db_url) as conn:
        analyst.read_only(conn)
        p = analyst.parcel_by_id(conn, cfg, 1)
        assert p["crop"] == ["o'neil\"; DROP TABLE x; --"] and p["note"] == ["it's"]
        peers = analyst.parcel_peers(conn, cfg, 1, 200, 10)
        assert peers["pids"] == [2] and peers["distance"][0] == pytest.approx(50, rel=0.01)


def test_read_only_transaction_refuses_writes(db_url, db_schema):
    ensure_schema(db_url, db_schema)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), transaction(db_url) as conn:
        analyst.read_only(conn)
        conn.execute(f'DELETE FROM "{db_schema}".sigs')


# ----------------------------------------------------------------- authentication
def test_standalone_authentication(app, sample_aoi):
    from fastapi.testclient import TestClient

    cfg, _ = sample_aoi
    c = TestClient(app)
    url = "/query/parcelById"
    params = {"aoi": cfg.name, "pid": 1}
    assert c.get(url, params=params).status_code == 401
    assert "Basic" in c.get(url, params=params).headers["www-authenticate"]
    assert c.get(url, params=params, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get(url, params=params, headers=AUTH).status_code == 200
    assert c.get(url, params=params, auth=("ana", "s3cret:,x")).status_code == 200
    assert c.get(url, params=params, auth=("ana", "wrong")).status_code == 401
    assert c.get(url, params=params, auth=("bob", "s3cret:,x")).status_code == 401
    assert c.get("/aois", headers=AUTH).status_code == 200
    page = c.get("/", headers=AUTH)
    assert page.status_code == 200 and cfg.name in page.text and "/docs" in page.text
    assert c.get("/openapi.json").status_code == 200          # the schema is public, the data is not


def test_standalone_refuses_to_start_without_credentials(monkeypatch):
    monkeypatch.delenv("CBM_API_TOKENS", raising=False)
    monkeypatch.delenv("CBM_API_USERS", raising=False)
    monkeypatch.delenv("CBM_API_NO_AUTH", raising=False)
    from cbm_api import create_standalone_app

    with pytest.raises(RuntimeError, match="CBM_API_TOKENS"):
        create_standalone_app()
    monkeypatch.setenv("CBM_API_USERS", "nopassword")
    with pytest.raises(RuntimeError, match="user:password"):
        create_standalone_app()


def test_standalone_uvicorn_with_environment_configuration(sample_aoi, db_url, monkeypatch):
    """uvicorn serving create_standalone_app, configured only from the environment, over HTTP."""
    import requests
    import uvicorn

    cfg, aoi_dir = sample_aoi
    monkeypatch.setenv("CBM_AOI_DIR", str(aoi_dir))
    monkeypatch.setenv("CBM_DB_URL", db_url)
    monkeypatch.setenv("CBM_API_USERS", "jrc:pa%2Css%3Aword")
    monkeypatch.setenv("CBM_API_CORS_ORIGINS", "https://frontend.example")
    monkeypatch.delenv("CBM_API_TOKENS", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config("cbm_api:create_standalone_app", factory=True, host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        r = requests.get(f"{base}/query/parcelTimeSeries", params={"aoi": cfg.name, "pid": 1, "tstype": "bs"},
                         auth=("jrc", "pa,ss:word"), headers={"Origin": "https://frontend.example"}, timeout=30)
        assert r.status_code == 200 and set(r.json()["band"]) == {"VVb", "VHb"}
        assert r.headers["access-control-allow-origin"] == "https://frontend.example"
        assert requests.get(f"{base}/query/parcelTimeSeries", params={"aoi": cfg.name, "pid": 1},
                            timeout=30).status_code == 401
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ----------------------------------------------------------------- index use
def test_time_series_is_served_by_the_primary_keys_on_partitioned_tables(db_url, db_schema):
    """sigs and hists PARTITIONED by obsid range (as the lead's schema will make them), SYNTHETIC rows:
    the observation and signature queries of one pid probe the keys, never scan sigs/hists."""
    ensure_schema(db_url, db_schema)
    s = db_schema
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(f'DROP VIEW "{s}".parcel_observations, "{s}".parcel_observations_raw')
        c.execute(f'DROP TABLE "{s}".sigs, "{s}".hists')
        c.execute(f"""CREATE TABLE "{s}".sigs (pid integer NOT NULL, obsid integer NOT NULL, band char(3) NOT NULL,
                      count real, mean real, std real, min real, max real, p25 real, p50 real, p75 real,
                      PRIMARY KEY (obsid, pid, band)) PARTITION BY RANGE (obsid)""")
        c.execute(f"""CREATE TABLE "{s}".hists (pid integer NOT NULL, obsid integer NOT NULL, hist json NOT NULL,
                      PRIMARY KEY (obsid, pid)) PARTITION BY RANGE (obsid)""")
        for k in range(3):
            for t in ("sigs", "hists"):
                c.execute(f'CREATE TABLE "{s}".{t}_p{k} PARTITION OF "{s}".{t} FOR VALUES FROM ({k * 100 + 1}) '
                          f'TO ({k * 100 + 101})')
        from cbm_ops.db import q

        c.execute(q("schema_views", schema=s))
        c.execute(f"""INSERT INTO "{s}".dias_catalogue (id, obstime, reference, sensor, card, footprint)
                      SELECT i, '2023-01-01'::timestamp + i * interval '1 day',
                             format('S2A_MSIL2A_%s_N0510_R051_T31UDS_20230101T000000',
                                    to_char('2023-01-01'::timestamp + i * interval '1 day', 'YYYYMMDD"T"HH24MISS')),
                             '2A', 's2', ST_Multi(ST_MakeEnvelope(2, 50, 4, 52, 4326))
                      FROM generate_series(1, 300) i""")
        c.execute(f"""INSERT INTO "{s}".sigs SELECT p, o, b, 100, 1000, 1, 1, 1, 1, 1, 1
                      FROM generate_series(1, 300) o, generate_series(1, 1500) p,
                           unnest(ARRAY['B02', 'B03', 'B04', 'B08']) b""")
        c.execute(f"""INSERT INTO "{s}".hists SELECT p, o, '{{"4": 25}}'::json
                      FROM generate_series(1, 300) o, generate_series(1, 1500) p""")
        c.execute(f'CREATE TABLE "{s}".parcels (ogc_fid integer PRIMARY KEY, wkb_geometry geometry(Polygon, 4326))')
        c.execute(f'INSERT INTO "{s}".parcels SELECT p, ST_MakeEnvelope(3, 51, 3.001, 51.001, 4326) '
                  'FROM generate_series(1, 1500) p')
        for t in ("sigs", "hists", "dias_catalogue", "parcels"):
            c.execute(f'ANALYZE "{s}".{t}')
    cfg = AoiConfig(name="part", schema=s, start_date=dt.date(2023, 1, 1), cards=("s2",))
    from cbm_ops.db import q

    with transaction(db_url) as conn:
        bbox = analyst.parcel_bbox(conn, cfg, 777)
        render = psycopg.ClientCursor(conn).mogrify        # the statements with their values, for EXPLAIN
        queries = {
            "observations": render(q("api_parcel_observations", schema=s), {
                "pid": 777, "cards": ["s2"], "start": dt.datetime(2023, 1, 1), "end": dt.datetime(2024, 1, 1),
                "bbox": bbox, "with_hist": False}),
            "signatures": render(q("api_parcel_sigs", schema=s), {"obsids": [5, 150, 250], "pid": 777,
                                                                  "bands": ["B04", "B08"]}),
            "view": f'SELECT * FROM "{s}".parcel_observations WHERE pid = 777 ORDER BY obstime',
        }
        out = {name: "\n".join(r[0] for r in conn.execute("EXPLAIN " + text)) for name, text in queries.items()}
        ts = analyst.parcel_time_series(conn, cfg, 777, "s2", year=2023)
    for name, plan in out.items():
        assert "Seq Scan on sigs" not in plan and "Seq Scan on hists" not in plan, (name, plan)
        assert "sigs_p0_pkey" in plan or "sigs_p1_pkey" in plan, (name, plan)
        if name != "signatures":
            assert "Index Cond: ((obsid = d.id) AND (pid = 777))" in plan, (name, plan)
    assert len(ts["band"]) == 4 * 300 and set(ts["obsid"]) == set(range(1, 301))
    assert set(ts["cloudfree"]) == {True}
