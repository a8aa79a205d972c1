"""The JRC RESTful API routes of the parcel API on the REAL bundled sample (June 2018 extracted).

* the JRC's OpenAPI files, server code and client URLs (vendored in tests/fixtures/jrc) against
  the app's own OpenAPI document;
* the JRC answer shapes against the database and the source rasters: parcel columns, the
  SCL histograms of the s2 series, rings and ``only_ids``, ``year`` datasets, ``ptype`` AOIs,
  ``/query/info``;
* the standalone login with a JRC-format users file, per-AOI rights, files without login;
* image chips against the band files (the JRC's ``rasterio.mask`` rule as reference),
  stretched PNGs against the JRC formula, batches, Sentinel-1, limits and the cache;
* backgrounds from a local tile server of real imagery (never an outside request);
* the weather import and series against the REAL AgERA5 CSV.

The real ``cbm`` client itself runs in ``make test-client`` (tests_client/).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
import yaml
from conftest import FIXTURES, ROOT

sys.path.insert(0, str(ROOT / "plugins"))
from cbm_api import create_app  # noqa: E402

from cbm_ops.config import ApiSettings, load_aoi  # noqa: E402
from cbm_ops.errors import MeteoImportError  # noqa: E402
from cbm_ops.extract import run_queue  # noqa: E402
from cbm_ops.harvest import harvest  # noqa: E402
from cbm_ops.parcels import import_parcels  # noqa: E402
from cbm_ops.users import User, bytes_repr  # noqa: E402

AOI, AOI_G = "jrc_sample", "jrc_sample_g"
TOKEN = "test-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WINDOW = (dt.datetime(2018, 6, 1), dt.datetime(2018, 7, 1))
METEO = ROOT / "include" / "meteo" / "demo_flanders_agera5.csv"
JRC = FIXTURES / "jrc"
DIRS: dict[str, Path] = {}           # the sample fixture's AOI directory


def jrc_user(password: str, aois: list[str]) -> dict:
    """A users-file record made exactly as the JRC's ``users.py add`` makes it (ec-jrc/cbm
    ``api/scripts/users.py``: 32-byte salt, PBKDF2-HMAC-SHA256, 100,000 iterations, ``str(b)[2:-1]``)."""
    salt = os.urandom(32)
    key = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, 100000)
    return {"salt": str(salt)[2:-1], "key": str(key)[2:-1], "aois": aois}


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    from tile_server import TileServer, true_colour

    product = next((ROOT / "include/sample/eodata/Sentinel-2/MSI/L2A/2018/06/30").glob("*.SAFE"))
    server = TileServer(true_colour(product, tmp_path_factory.mktemp("tiles") / "tc.tif"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sample(db_url, tmp_path_factory, tiles):
    """The demo AOI (June 2018 extracted, weather imported, an osm background on the local tile
    server, ptype g) and a second AOI holding ptype g's parcels (crop column ``name``)."""
    base = yaml.safe_load((ROOT / "include" / "aois" / "demo_flanders.yaml").read_text())
    d = tmp_path_factory.mktemp("aois")
    suffix = uuid.uuid4().hex[:8]
    main = {**base, "name": AOI, "schema": f"t_jrc_{suffix}", "cards": ["s2", "bs"],
            "jrc": {"ptypes": {"g": AOI_G}, "backgrounds": {"osm": {"url": tiles.template, "max_zoom": 19}}}}
    other = {**base, "name": AOI_G, "schema": f"t_jrcg_{suffix}",
             "parcels": {**base["parcels"], "crop_column": "name"}}
    for data in (main, other):
        (d / f"{data['name']}.yaml").write_text(yaml.safe_dump(data))
    cfg, cfg_g = load_aoi(d / f"{AOI}.yaml"), load_aoi(d / f"{AOI_G}.yaml")
    DIRS["aois"] = d
    import_parcels(db_url, cfg)
    import_parcels(db_url, cfg_g)
    harvest(db_url, cfg, *WINDOW)
    for stage in cfg.stages:
        run_queue(db_url, cfg, stage)
    from cbm_ops.analyst.meteo import import_meteo

    import_meteo(db_url, cfg, METEO)
    yield {AOI: cfg, AOI_G: cfg_g}
    with psycopg.connect(db_url, autocommit=True) as c:
        for x in (cfg, cfg_g):
            c.execute(f'DROP SCHEMA IF EXISTS "{x.schema}" CASCADE')


def make_app(sample, db_url, chips_dir: Path, **settings):
    users = {"ana": User("ana", *_key("s3cret"), aois=(AOI,)), "bob": User("bob", *_key("other"), aois=("nowhere",))}
    return create_app(auth="standalone", tokens=[TOKEN], users=users, aois=lambda: sample, db_url=lambda cfg: db_url,
                      settings=ApiSettings(chips_dir=chips_dir, **settings))


def _key(password: str) -> tuple[bytes, bytes]:
    salt = os.urandom(32)
    return salt, hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100000)


@pytest.fixture(scope="module")
def chips_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chips")


@pytest.fixture(scope="module")
def client(sample, db_url, chips_dir):
    from fastapi.testclient import TestClient

    return TestClient(make_app(sample, db_url, chips_dir))


def get(client, path, **params):
    return client.get(path, params=params, headers=AUTH)


def sql(db_url, text, *args):
    with psycopg.connect(db_url) as c:
        return c.execute(text, args).fetchall()


# ----------------------------------------------------------------- the JRC's contract vs the app's OpenAPI
def _app_params(client) -> dict[tuple[str, str], set[str]]:
    spec = client.get("/openapi.json").json()
    out = {}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            names = {p["name"] for p in op.get("parameters", [])}
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" in ref:
                names |= set(spec["components"]["schemas"][ref["$ref"].split("/")[-1]]["properties"])
            out[(path, method.upper())] = names
    return out


def test_every_route_and_parameter_of_the_jrc_openapi_files_is_served(client):
    swagger = yaml.safe_load((JRC / "api/static/swagger.yaml").read_text())
    params = yaml.safe_load((JRC / "api/static/swagger_specs/params.yaml").read_text())["components"]["parameters"]
    app = _app_params(client)
    checked = 0
    for path, ref in swagger["paths"].items():
        file, pointer = ref["$ref"].split("#")
        spec = yaml.safe_load((JRC / "api" / file.removeprefix("./")).read_text())
        for method, op in spec["paths"][pointer.split("/")[-1]].items():
            names = {params[p["$ref"].split("/")[-1]]["name"] if "$ref" in p else p["name"]
                     for p in op.get("parameters", [])}
            if method == "post":     # the body: the batch definition's keys (rawS1ChipsBatch's is the code's, below)
                names = set(spec["definitions"]["batch"]["properties"]) if path == "/rawChipsBatch" else set()
            served = app.get((f"/query{path}", method.upper()))
            assert served is not None, f"{method.upper()} /query{path} is not served"
            assert names <= served, (path, names - served)
            checked += 1
    assert checked == 12


def test_every_route_and_parameter_of_the_jrc_server_code_is_served(client):
    """ec-jrc/cbm api/main.py: routes, request.args names and POST keys."""
    src = (JRC / "api/main.py").read_text()
    not_served = {"/query/markers"}     # markers_2020 of one JRC deployment: in no OpenAPI file and no client
    app = _app_params(client)
    routes = 0
    for block in re.split(r"\n@app\.route\(", src)[1:]:
        m = re.match(r"'(/query/\w+)', methods=\['(\w+)'\]", block)
        if not m or m.group(1) in not_served:
            continue
        names = set(re.findall(r"request\.args\.get\('(\w+)'\)", block)) | set(re.findall(r"'(\w+)' in request\.args",
                                                                                       block))
        required = re.search(r"required = \[([^\]]*)\]", block)
        if required:
            names |= set(re.findall(r'"(\w+)"', required.group(1)))
        served = app.get((m.group(1), m.group(2)))
        assert served is not None, m.group(1)
        assert names <= served, (m.group(1), names - served)
        routes += 1
    assert routes == 15


def test_every_url_the_cbm_client_builds_is_served(client):
    """cbm 0.0.18 cbm/datas/api.py: ``/query/<route>?a=...&b=...`` f-strings."""
    src = (JRC / "cbm/datas/api.py").read_text()
    app = _app_params(client)
    calls: dict[str, set[str]] = {}
    for fn in re.split(r"\ndef ", src)[1:]:
        route = re.search(r"/query/(\w+)", fn)
        if route:
            calls.setdefault(route.group(1), set()).update(re.findall(r"[?&](\w+)=", fn))
    assert set(calls) == {"info", "parcelByLocation", "parcelByID", "parcelsByPolygon", "parcelPeers",
                          "parcelTimeSeries", "weatherTimeSeries", "chipsByLocation", "rawChipByLocation",
                          "backgroundByLocation"}
    for route, names in calls.items():
        assert names <= app[(f"/query/{route}", "GET")], (route, names - app[(f"/query/{route}", "GET")])


# ----------------------------------------------------------------- parcel answers
def test_parcel_columns_in_the_jrc_shape(client, sample):
    a = get(client, "/query/parcelByID", aoi=AOI, year=2018, pid=1, withGeometry=True).json()
    b = get(client, "/query/parcelById", aoi=AOI, year=2018, pid=1, withGeometry=True).json()
    assert a == b and list(a)[:3] == ["pid", "cropname", "cropcode"]
    assert (a["pid"], a["cropname"], a["cropcode"], a["srid"]) == (["1"], ["Maize"], ["1200"], [32631])
    assert a["cropcode"] == [str(a["ct"][0])] and a["cropname"] == a["ct_name"]
    x, y = json.loads(a["geom"][0])["coordinates"][0][0][0]
    assert 500000 < x < 503000 and 5.62e6 < y < 5.64e6
    w = get(client, "/query/parcelByID", aoi=AOI.upper(), year=2018, pid=1, withGeometry=True, wgs84=True).json()
    lon, lat = json.loads(w["geom"][0])["coordinates"][0][0][0]
    assert 3.0 < lon < 3.05 and 50.8 < lat < 50.83 and w["pid"] == ["1"]        # aoi lower-cased, as the JRC's


def test_polygon_rings_only_ids_and_the_swagger_spelling(client, sample, db_url):
    cfg = sample[AOI]
    lon, lat = get(client, "/query/parcelById", aoi=AOI, pid=1).json()["clon"][0], 50.8159
    dx, dy = 0.002, 0.001
    ring = [(lon - dx, lat - dy), (lon + dx, lat - dy), (lon + dx, lat + dy), (lon - dx, lat + dy)]
    wkt = "POLYGON((" + ", ".join(f"{x} {y}" for x, y in [*ring, ring[0]]) + "))"
    expect = [str(r[0]) for r in sql(db_url, f'SELECT ogc_fid FROM "{cfg.schema}".parcels WHERE ST_Intersects('
                                             'wkb_geometry, ST_Transform(ST_GeomFromText(%s, 4326), 32631)) ORDER BY 1',
                                     wkt)]
    assert len(expect) > 1
    dash = "-".join(f"{x}_{y}" for x, y in ring)                    # the cbm GUI's format (open ring)
    comma = ",".join(f"{x} {y}" for x, y in [*ring, ring[0]])
    for path, key, text in (("/query/parcelsByPolygon", "polygon", dash), ("/query/parcelByPolygon", "poly", comma),
                            ("/query/parcelsByPolygon", "polygon", wkt)):
        r = get(client, path, aoi=AOI, year=2018, only_ids=True, **{key: text}).json()
        assert r == {"pid": expect}, (path, text)
    full = get(client, "/query/parcelsByPolygon", aoi=AOI, polygon=dash, withGeometry=True).json()
    assert full["pid"] == expect and len(full["geom"]) == len(expect) and "cropname" in full
    assert get(client, "/query/parcelsByPolygon", aoi=AOI).status_code == 400


def test_year_is_a_dataset_and_ptype_another_aoi(client, sample):
    r = get(client, "/query/parcelByID", aoi=AOI, year=2016, pid=1)
    assert r.status_code == 404 and "2017-2018" in r.json()["detail"]
    assert get(client, "/query/parcelTimeSeries", aoi=AOI, year=2019, pid=1).status_code == 404
    r = get(client, "/query/parcelByID", aoi=AOI, year=2018, pid=1, ptype="m")
    assert r.status_code == 404 and "ptype" in r.json()["detail"] and "g" in r.json()["detail"]
    g = get(client, "/query/parcelByID", aoi=AOI, year=2018, pid=1, ptype="g").json()
    assert g["cropname"] == ["lpis_maize_2018"]          # AOI_G's crop column: its own parcel set answered


def test_s2_series_carry_the_scl_histograms_of_screened_observations_only(client, sample, db_url):
    cfg = sample[AOI]
    ts = get(client, "/query/parcelTimeSeries", aoi=AOI, year=2018, pid=1, tstype="s2").json()
    hists = {o: h for o, h in sql(db_url, f'SELECT obsid, hist FROM "{cfg.schema}".hists WHERE pid = 1')}
    assert ts["hist"] and all(h == hists[o] for o, h in zip(ts["obsid"], ts["hist"], strict=True))
    assert set(ts["obsid"]) == set(hists)
    assert all(k.isdigit() for h in ts["hist"] for k in h)             # decimal-string keys, as the client parses
    # parcel 2 (200 m2) has no 20 m SCL pixel: no screened observation, as the JRC's inner join
    assert get(client, "/query/parcelTimeSeries", aoi=AOI, pid=2).json()["band"] == []
    every = get(client, "/query/parcelTimeSeries", aoi=AOI, pid=2, unscreened=True).json()
    assert every["band"] and set(every["hist"]) == {None} and set(every["cloudfree"]) == {None}
    r = get(client, "/query/parcelTimeSeries", aoi=AOI, year=2018, pid=1, tsformat="csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == "attachment; filename=timeseries_jrc_sample2018_1_s2.csv"
    assert r.text.splitlines()[0].endswith(",cloudfree,hist") and len(r.text.splitlines()) == len(ts["band"]) + 1


def test_info_lists_the_readable_aois_as_the_client_gui_reads_them(client, sample):
    info = get(client, "/query/info").json()
    a = info["aois"][AOI]
    assert a["years"] == ["2017", "2018"] and a["id_examples_2018"] == ["1", "2", "3", "4", "5"]
    assert a["tms"] == ["osm"] and a["datasets"] == ["g"] and a["time_series"] == ["s2", "bs"]
    assert a["request_examples"]["parcelByID"].endswith("/query/parcelByID?aoi=jrc_sample&year=2018&pid=1"
                                                       "&withGeometry=True")
    ana = client.get("/query/info", auth=("ana", "s3cret")).json()
    assert set(ana["aois"]) == {AOI} and set(info["aois"]) == {AOI, AOI_G}


# ----------------------------------------------------------------- login
def test_standalone_login_with_a_jrc_users_file_and_per_aoi_rights(sample, db_url, tmp_path, monkeypatch):
    from cbm_api import create_standalone_app
    from fastapi.testclient import TestClient

    users = tmp_path / "users.json"
    users.write_text(json.dumps({"Ana": jrc_user("pw ä'\"", [AOI]), "boss": jrc_user("x", ["admin"])}))
    d = DIRS["aois"]
    for k in ("CBM_API_TOKENS", "CBM_API_USERS", "CBM_API_NO_AUTH"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("CBM_API_USERS_FILE", str(users))
    monkeypatch.setenv("CBM_AOI_DIR", str(d))
    monkeypatch.setenv("CBM_DB_URL", db_url)
    monkeypatch.setenv("CBM_CHIPS_DIR", str(tmp_path / "chips"))
    c = TestClient(create_standalone_app())
    q = {"aoi": AOI, "pid": 1}
    assert c.get("/query/parcelByID", params=q, auth=("ana", "pw ä'\"")).status_code == 200   # names: lower case
    assert c.get("/query/parcelByID", params=q, auth=("ana", "pw")).status_code == 401
    assert c.get("/query/parcelByID", params=q, auth=("nobody", "x")).status_code == 401
    r = c.get("/query/parcelByID", params={**q, "aoi": AOI_G}, auth=("ana", "pw ä'\""))
    assert r.status_code == 403 and AOI_G in r.json()["detail"]
    assert c.get("/query/parcelByID", params={**q, "aoi": AOI_G}, auth=("boss", "x")).status_code == 200
    r = c.get("/query/parcelByID", params=q)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")


def test_no_query_route_answers_without_login(client):
    spec = client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for method in ops:
            r = client.request(method.upper(), path, params={"aoi": AOI, "pid": 1})
            assert r.status_code == 401, (method, path, r.status_code)


# ----------------------------------------------------------------- image chips
def _centroid(client) -> tuple[float, float]:
    p = get(client, "/query/parcelById", aoi=AOI, pid=1).json()
    return p["clon"][0], p["clat"][0]


def _jrc_mask(path: Path, lon: float, lat: float, size: float):
    """The JRC's chip: rasterio.mask of the square (all_touched=False), cropped to the pixels kept."""
    import rasterio.mask
    import shapely
    from pyproj import Transformer

    with rasterio.open(path) as ds:
        x, y = Transformer.from_crs(4326, ds.crs.to_epsg(), always_xy=True).transform(lon, lat)
        square = shapely.box(x - size / 2, y - size / 2, x + size / 2, y + size / 2)
        arr, tr = rasterio.mask.mask(ds, [square], crop=True, all_touched=False, filled=False)
    keep = ~arr.mask[0]
    rows, cols = np.where(keep)
    data = arr.data[0][rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    return data, tr @ tr.translation(cols.min(), rows.min())


def test_raw_chips_are_the_band_files_pixels_around_the_point(client, sample, db_url, chips_dir):
    cfg = sample[AOI]
    lon, lat = _centroid(client)
    r = get(client, "/query/rawChipByLocation", lon=lon, lat=lat, start_date="2018-06-01", end_date="2018-06-15",
            band="B04", chipsize=400)
    idx = r.json()
    refs = [x[0] for x in sql(db_url, f'SELECT reference FROM "{cfg.schema}".dias_catalogue WHERE card = %s AND '
                                      "obstime >= '2018-06-01' AND obstime < '2018-06-16' ORDER BY obstime", "s2")]
    assert idx["dates"] == [x.split("_")[2] for x in refs] and len(refs) >= 3
    for chip, ref in zip(idx["chips"], refs, strict=True):
        assert re.fullmatch(rf"/static/tmp/[0-9a-f]{{32}}/{ref}\.B04\.tif", chip)
        got = client.get(chip)                                  # no credentials, as the client downloads
        assert got.status_code == 200 and got.headers["content-type"] == "image/tiff"
        src = next(cfg.resolve(cfg.store.root).glob(f"Sentinel-2/**/{ref}.SAFE/GRANULE/*/IMG_DATA/R10m/*_B04_10m.jp2"))
        want, transform = _jrc_mask(src, lon, lat, 400)
        with rasterio.MemoryFile(got.content) as mf, mf.open() as ds:
            assert ds.crs.to_epsg() == 32631 and ds.dtypes[0] == "uint16" and ds.nodata == 0
            assert ds.read(1).shape == (40, 40) and ds.transform == transform
            np.testing.assert_array_equal(ds.read(1), want)
            assert ds.scales == (1e-4,) and ds.offsets == (0.0,) and ds.tags()["CBM_PRODUCT"] == ref
    # the cache: the same request answers the same paths without cutting again
    path = chips_dir / idx["chips"][0].split("/")[-2] / idx["chips"][0].split("/")[-1]
    mtime = path.stat().st_mtime_ns
    again = get(client, "/query/rawChipByLocation", lon=lon, lat=lat, start_date="2018-06-01",
                end_date="2018-06-15", band="B04", chipsize=400).json()
    assert again == idx and path.stat().st_mtime_ns == mtime
    scl = get(client, "/query/rawChipByParcelID", aoi=AOI, year=2018, pid=1, start_date="2018-06-01",
              end_date="2018-06-15", band="SCL", chipsize=400).json()
    assert scl["dates"] == idx["dates"]
    with rasterio.MemoryFile(client.get(scl["chips"][0]).content) as mf, mf.open() as ds:
        assert ds.read(1).shape == (20, 20) and ds.dtypes[0] == "uint8" and ds.scales == (1.0,)
    names = get(client, "/query/rawChipByLocation", lon=lon, lat=lat, start_date="2018-06-01",
                end_date="2018-06-15", band="B04", onlylist=True).json()
    assert names == {"chips": [f"{x}.SAFE" for x in refs]}


def test_chip_requests_are_bounded_with_clear_400s(sample, db_url, tmp_path, client):
    from fastapi.testclient import TestClient

    lon, lat = _centroid(client)
    small = TestClient(make_app(sample, db_url, tmp_path, chips_max_count=3, chips_max_size_m=1000))
    q = {"lon": lon, "lat": lat, "start_date": "2018-06-01", "end_date": "2018-06-30", "band": "B08", "chipsize": 400}
    cases = [({}, "at most 3"), ({"chipsize": 1001}, "chipsize"), ({"end_date": "2018-05-01"}, "end_date"),
             ({"start_date": "01-06-2018"}, "start_date"), ({"plevel": "LEVEL1C"}, "plevel"), ({"band": "B09"}, "band")]
    for extra, word in cases:
        r = small.get("/query/rawChipByLocation", params={**q, **extra}, headers=AUTH)
        assert r.status_code == 400 and word in r.json()["detail"], (extra, r.text)
    r = small.get("/query/chipsByLocation", params={**q, "end_date": "2018-06-03", "band": "B08_B04"}, headers=AUTH)
    assert r.status_code == 400 and "1 or 3 bands" in r.json()["detail"]
    r = small.get("/query/chipsByLocation", params={**q, "end_date": "2018-06-03", "lut": "a_b"}, headers=AUTH)
    assert r.status_code == 400 and "lut" in r.json()["detail"]
    assert not list(tmp_path.glob("*/*.tif"))                   # nothing was cut for a refused request


def _stretch(a: np.ndarray, lo_p: float = 5, hi_p: float = 95) -> np.ndarray:
    """The JRC's chipRipper2 stretch, written out: clip(255 (x - p5) / (p95 - p5)) over the valid pixels."""
    v = a[a > 0].astype(float)
    lo, hi = np.percentile(v, [lo_p, hi_p])
    out = np.clip(np.round(255 * (a.astype(float) - lo) / (hi - lo)), 0, 255).astype(np.uint8)
    out[a == 0] = 0
    return out


def test_png_chips_are_the_jrc_stretch_of_the_bands(client, sample):
    from PIL import Image

    cfg = sample[AOI]
    lon, lat = _centroid(client)
    q = {"lon": lon, "lat": lat, "start_date": "2018-06-30", "end_date": "2018-06-30", "band": "B08_B04_B11",
         "chipsize": 400}
    page = get(client, "/query/chipsByLocation", **q, lut="None")
    assert page.headers["content-type"].startswith("text/html") and page.text.count("<img") == 1
    idx = get(client, "/query/chipsByLocation", **q, format="json").json()
    safe = next(cfg.resolve(cfg.store.root).glob("Sentinel-2/**/*_20180630T*.SAFE"))
    assert idx["dates"] == [safe.name.split("_")[2]] and f"src='{idx['chips'][0]}'" in page.text
    png = client.get(idx["chips"][0])
    assert png.headers["content-type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(png.content)))
    assert img.shape == (40, 40, 3)
    b08, _ = _jrc_mask(next(safe.glob("GRANULE/*/IMG_DATA/R10m/*_B08_10m.jp2")), lon, lat, 400)
    b04, _ = _jrc_mask(next(safe.glob("GRANULE/*/IMG_DATA/R10m/*_B04_10m.jp2")), lon, lat, 400)
    np.testing.assert_array_equal(img[..., 0], _stretch(b08))
    np.testing.assert_array_equal(img[..., 1], _stretch(b04))
    with rasterio.open(next(safe.glob("GRANULE/*/IMG_DATA/R20m/*_B11_20m.jp2"))) as ds:   # 20 m onto the 10 m grid
        b11 = np.kron(_jrc_mask(Path(ds.name), lon, lat, 400)[0], np.ones((2, 2), np.uint16))
    assert np.corrcoef(img[..., 2].ravel(), _stretch(b11[:40, :40]).ravel())[0, 1] > 0.9
    fixed = get(client, "/query/chipsByLocation", **q, lut="0_4000_0_4000_0_4000", format="json").json()
    img = np.asarray(Image.open(io.BytesIO(client.get(fixed["chips"][0]).content)))
    want = np.clip(np.round(255 * b08.astype(float) / 4000), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(img[..., 0], want)


def test_batch_chips_of_named_products_and_of_sentinel1(client, sample, db_url):
    cfg = sample[AOI]
    lon, lat = _centroid(client)
    ref = sql(db_url, f'SELECT reference FROM "{cfg.schema}".dias_catalogue WHERE card = %s ORDER BY obstime LIMIT 1',
              "s2")[0][0]
    r = client.post("/query/rawChipsBatch", headers=AUTH, json={"lon": lon, "lat": lat, "tiles": [f"{ref}.SAFE"],
                                                                "bands": ["B04", "B02"], "chipsize": 200})
    b = r.json()
    dt_key = ref.split("_")[2]
    assert b["dates"] == [f"{dt_key}_B02", f"{dt_key}_B04"] and b["chips"][0].endswith(f"/{ref}.B02.tif")
    bad = client.post("/query/rawChipsBatch", headers=AUTH, json={"lon": lon, "lat": lat, "tiles": [ref],
                                                                  "bands": ["B04"], "chipsize": 200, "x": 1})
    assert bad.status_code == 400 and "x" in bad.json()["detail"]
    missing = client.post("/query/rawChipsBatch", headers=AUTH, json={
        "lon": lon, "lat": lat, "tiles": ["S2A_MSIL2A_20990101T000000_N0500_R001_T31UDS_20990101T000000"],
        "bands": ["B04"], "chipsize": 200})
    assert missing.status_code == 404
    s1 = client.post("/query/rawS1ChipsBatch", headers=AUTH, json={
        "lon": lon, "lat": lat, "dates": ["2018-06-01", "2018-06-05"], "chipsize": 400, "plevel": "CARD-BS"}).json()
    refs = [x[0] for x in sql(db_url, f'SELECT reference FROM "{cfg.schema}".dias_catalogue WHERE card = %s AND '
                                      "obstime >= '2018-06-01' AND obstime < '2018-06-06' ORDER BY obstime", "bs")]
    assert s1["dates"] == sorted(f"{x.split('_')[4]}_{p}" for x in refs for p in ("VH", "VV")) and refs
    vv = [c for c in s1["chips"] if c.endswith(f"{refs[0]}_VV.tif")][0]
    src = next((cfg.resolve(cfg.store.root) / "Sentinel-1").glob(f"**/{refs[0]}.data/Gamma0_VV.img"))
    with rasterio.MemoryFile(client.get(vv).content) as mf, mf.open() as ds:
        assert ds.dtypes[0] == "float32" and ds.read(1).shape == (20, 20)
        np.testing.assert_array_equal(ds.read(1), _jrc_mask(src, lon, lat, 400)[0])


def test_chip_files_need_their_unguessable_path(client):
    lon, lat = _centroid(client)
    idx = get(client, "/query/rawChipByLocation", lon=lon, lat=lat, start_date="2018-06-01", end_date="2018-06-03",
              band="B03", chipsize=100).json()
    token, name = idx["chips"][0].split("/")[-2:]
    assert client.get(f"/static/tmp/{token}/{name}").status_code == 200
    for bad in (f"/static/tmp/{'0' * 32}/{name}", f"/static/tmp/{token}/..%2F..%2Fsecret",
                f"/static/tmp/{token}/.secret", "/static/tmp/.secret", f"/static/tmp/{token[:-1]}/{name}"):
        assert client.get(bad).status_code == 404, bad


# ----------------------------------------------------------------- backgrounds
def test_background_without_a_source_is_exactly_empty_and_asks_no_one(client, tiles):
    before = sum(tiles.hits.values())
    lon, lat = _centroid(client)
    for tms in ("google", "bing"):
        r = get(client, "/query/backgroundByLocation", lon=lon, lat=lat, tms=tms, iformat="tif")
        assert r.status_code == 200 and r.content == b"{}"
    r = get(client, "/query/backgroundByParcelID", aoi=AOI_G, pid=1, tms="osm", iformat="tif")
    assert r.content == b"{}" and sum(tiles.hits.values()) == before


def test_background_from_the_configured_tile_server(client, tiles):
    from rasterio.transform import from_bounds
    from rasterio.warp import Resampling, reproject

    lon, lat = _centroid(client)
    r = get(client, "/query/backgroundByLocation", lon=lon, lat=lat, chipsize=256, extend=1024, tms="OSM",
            iformat="tif")
    assert r.status_code == 200 and r.text.startswith("http://testserver/static/tmp/") and r.text.endswith("/osm.tif")
    assert sum(tiles.hits.values()) > 0 and all(re.fullmatch(r"/\d+/\d+/\d+\.png", p) for p in tiles.hits)
    with rasterio.MemoryFile(client.get(r.text.removeprefix("http://testserver")).content) as mf, mf.open() as ds:
        assert ds.crs.to_epsg() == 3857 and ds.shape == (256, 256) and ds.count == 3
        want = np.zeros((3, 256, 256), np.uint8)
        reproject(tiles.src, want, src_transform=tiles.transform, src_crs=tiles.crs, dst_transform=ds.transform,
                  dst_crs="EPSG:3857", resampling=Resampling.bilinear)
        got = ds.read()
        assert abs(ds.bounds.right - ds.bounds.left - 1024) < 1e-6
        inside = want.sum(axis=0) > 0
        assert inside.mean() > 0.5 and np.abs(got.astype(int) - want)[:, inside].mean() < 12
        assert ds.transform == from_bounds(*ds.bounds, 256, 256)
    page = get(client, "/query/backgroundByParcelID", aoi=AOI, year=2018, pid=1, tms="osm", withGeometry=True,
               extend=600)
    assert page.headers["content-type"].startswith("text/html")
    png_url = re.search(r"src='([^']+)'", page.text).group(1)
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(client.get(png_url.removeprefix("http://testserver")).content)))
    assert ((img[..., 0] == 255) & (img[..., 1] == 255) & (img[..., 2] == 0)).sum() > 100   # the yellow outline


def test_background_source_down_is_a_502(sample, db_url, tmp_path, client):
    from fastapi.testclient import TestClient

    from cbm_ops.db.devdb import free_port

    lon, lat = _centroid(client)
    cfg = sample[AOI]
    src = {"url": f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png", "timeout_s": 2}
    dead = {**sample, AOI: cfg.model_copy(update={"jrc": cfg.jrc.model_copy(update={"backgrounds": {
        "osm": type(cfg.jrc.backgrounds["osm"]).model_validate(src)}})})}
    c = TestClient(make_app(dead, db_url, tmp_path))
    r = c.get("/query/backgroundByLocation", params={"lon": lon, "lat": lat, "tms": "osm", "iformat": "tif"},
              headers=AUTH)
    assert r.status_code == 502 and "background source" in r.json()["detail"]


# ----------------------------------------------------------------- weather
def test_weather_series_of_the_real_agera5_days(client, sample, db_url):
    import csv

    rows = [r for r in csv.DictReader(METEO.open()) if r["date"].startswith("2018")]
    w = get(client, "/query/weatherTimeSeries", aoi=AOI, year=2018, pid=1).json()
    assert w["meteo_date"] == [r["date"] for r in rows] and len(rows) == 334
    for k in ("tmin", "tmax", "tmean", "prec"):
        assert w[k] == pytest.approx([float(r[k]) for r in rows], abs=1e-4)
    assert get(client, "/query/weatherTimeSeries", aoi=AOI_G, pid=1).json() == {
        "meteo_date": [], "tmin": [], "tmax": [], "tmean": [], "prec": []}        # no meteo table: empty columns
    assert get(client, "/query/weatherTimeSeries", aoi=AOI, pid=99).status_code == 404
    r = get(client, "/query/weatherTimeSeries", aoi=AOI, year=2018, pid=1, tsformat="csv")
    assert r.headers["content-disposition"].endswith("timeseries_jrc_sample2018_1_WeatherTS.csv")


def test_weather_import_per_parcel_replaces_and_refuses_bad_files(sample, db_url, tmp_path):
    from cbm_ops.analyst.meteo import import_meteo, weather_time_series
    from cbm_ops.db import transaction

    cfg = sample[AOI]
    own = tmp_path / "own.csv"
    own.write_text("pid,date,tmin,tmax,tmean,prec\n3,2018-06-01,10,20,15,1.5\n3,2018-06-02,11,21,16,\n")
    rep = import_meteo(db_url, cfg, own)
    assert rep == {"rows": 2, "replaced": 0, "parcels": 1, "cells": 0, "first": "2018-06-01", "last": "2018-06-02"}
    assert import_meteo(db_url, cfg, own)["replaced"] == 2                     # a re-import changes nothing
    with transaction(db_url) as conn:
        assert weather_time_series(conn, cfg, 3) == {"meteo_date": ["2018-06-01", "2018-06-02"], "tmin": [10.0, 11.0],
                                                     "tmax": [20.0, 21.0], "tmean": [15.0, 16.0], "prec": [1.5, None]}
    before = sql(db_url, f'SELECT count(*) FROM "{cfg.schema}".meteo')
    bad = {"pid,date,tmin,tmax,tmean,prec\n3,2018-13-01,1,2,1,0\n": "line 2: date",
           "pid,date,tmin,tmax,tmean,prec\n3,2018-06-01,1,2,1,-1\n": "prec -1.0",
           "pid,date,tmin,tmax,tmean,prec\n3,2018-06-01,25,2,1,0\n": "tmin 25.0 is above tmax",
           "pid,date,tmin,tmax,tmean,prec\n3,2018-06-01,1,2,1,0\n3,2018-06-01,1,2,1,0\n": "given twice",
           "date,tmin,tmax,tmean,prec\n2018-06-01,1,2,1,0\n": "one of pid or cell",
           "cell,date,tmin,tmax,tmean,prec\nPOINT(3 50),2018-06-01,1,2,1,0\n": "Polygon",
           "pid,date,tmin,tmax,tmean,prec\n3,2018-06-01,1,2,1,0\n999,2018-06-01,1,2,1,0\n": "999"}
    for text, word in bad.items():
        f = tmp_path / "bad.csv"
        f.write_text(text)
        with pytest.raises(MeteoImportError, match=word):
            import_meteo(db_url, cfg, f)
    assert sql(db_url, f'SELECT count(*) FROM "{cfg.schema}".meteo') == before


def test_api_user_cli_writes_a_file_the_jrc_code_reads(tmp_path):
    """``cbm api-user add`` output checked with the JRC's own check (users.py ``user_auth``)."""
    import codecs
    import subprocess

    path = tmp_path / "users.json"
    subprocess.run([sys.executable, "-m", "cbm_ops", "api-user", "add", "Carla", "--file", str(path), "--aoi", AOI,
                    "--password-stdin"], input="s3 cret\n", text=True, check=True, capture_output=True)
    rec = json.loads(path.read_text())["carla"]
    salt = codecs.encode(rec["salt"].encode().decode("unicode_escape"), "raw_unicode_escape")
    key = codecs.encode(rec["key"].encode().decode("unicode_escape"), "raw_unicode_escape")
    assert key == hashlib.pbkdf2_hmac("sha256", b"s3 cret", salt, 100000) and rec["aois"] == [AOI]
    assert oct(path.stat().st_mode & 0o777) == "0o600" and bytes_repr(salt) == rec["salt"]
    out = subprocess.run([sys.executable, "-m", "cbm_ops", "api-user", "hash", "dan", "--password-stdin"],
                         input="pw\n", text=True, check=True, capture_output=True).stdout.strip()
    from cbm_ops.users import parse_env_users

    assert parse_env_users(out)["dan"].verify("pw") and not parse_env_users(out)["dan"].verify("pW")


def test_tempdir_default_for_the_chip_cache():
    s = ApiSettings.from_env({})
    assert s.chips_dir == Path(tempfile.gettempdir()) / f"cbm-chips-{os.getuid()}" and s.chips_max_count == 24
    with pytest.raises(Exception, match="CBM_CHIPS_MAX_COUNT"):
        ApiSettings.from_env({"CBM_CHIPS_MAX_COUNT": "0"})


def test_an_aoi_never_set_up_does_not_break_the_searches_over_every_aoi(sample, db_url, tmp_path, client):
    """Chips and backgrounds without ``aoi`` search every readable AOI: one whose schema does not exist
    yet holds no scenes (not a 500); /query/info names it with an error."""
    from fastapi.testclient import TestClient

    fresh = sample[AOI_G].model_copy(update={"name": "fresh", "schema_": f"t_fresh_{uuid.uuid4().hex[:8]}",
                                             "jrc": sample[AOI].jrc})       # searched first (by name), osm too
    c = TestClient(make_app({**sample, "fresh": fresh}, db_url, tmp_path))
    lon, lat = _centroid(client)
    r = c.get("/query/rawChipByLocation", headers=AUTH, params={"lon": lon, "lat": lat, "start_date": "2018-06-01",
                                                                "end_date": "2018-06-03", "band": "B03",
                                                                "chipsize": 100})
    assert r.status_code == 200 and len(r.json()["chips"]) >= 1
    r = c.get("/query/backgroundByLocation", headers=AUTH, params={"lon": lon, "lat": lat, "tms": "osm",
                                                                   "iformat": "tif", "extend": 300})
    assert r.status_code == 200 and r.text.endswith("/osm.tif")
    info = c.get("/query/info", headers=AUTH).json()["aois"]
    assert info["fresh"]["years"] == ["2017", "2018"] and "error" in info["fresh"] and "error" not in info[AOI]
