"""STAC harvest (pystac-client) against a local replay of REAL recorded searches:
Earth Search v1 (``earth-search-v1``), Planetary Computer (``planetary-computer``), CDSE
STAC v1 (``cdse-stac-v1``). Where a next page was not recorded the replay says so (an error,
or Earth Search's real empty last page); the 429 body is a DOCUMENTED shape.
"""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
import shapely
from conftest import shared
from stac_server import StacServer
from synthetic import set_aoi

from cbm_ops.config import AoiConfig
from cbm_ops.errors import HarvestError
from cbm_ops.harvest import catalogue, records
from cbm_ops.harvest.stac import StacSource

WORLD = "POLYGON((-179.9 -80, 179.9 -80, 179.9 80, -179.9 80, -179.9 -80))"
BOULDER = "POLYGON((-105.3 40.0, -104.9 40.0, -104.9 40.3, -105.3 40.3, -105.3 40.0))"


def page(folder: str, name: str) -> dict:
    return json.loads(shared("catalogue-responses", folder, name).read_text())


def cfg_for(schema: str, url: str, **cat) -> AoiConfig:
    return AoiConfig.model_validate({
        "name": "t", "schema": schema, "start_date": "2019-01-01", "cards": ["s2"],
        "catalogue": {"source": "stac", "url": url, "retries": 3, **cat}})


def rows(url: str, schema: str, cols: str) -> list[tuple]:
    with psycopg.connect(url) as c:
        return c.execute(f'SELECT {cols} FROM "{schema}".dias_catalogue ORDER BY reference').fetchall()


ES_PAIR = [page("earth-search-v1", "search_s2l2a_landsat_point_20231008_page1.json"),
           page("earth-search-v1", "search_s2l2a_landsat_point_20231008_page2_empty.json")]


# ----------------------------------------------------------------------------- Earth Search
def test_earth_search_post_paging_with_next_token(db_url, db_schema):
    with StacServer(ES_PAIR) as srv:
        cfg = cfg_for(db_schema, srv.url)
        set_aoi(db_url, cfg, BOULDER)
        rep = catalogue.harvest(db_url, cfg, dt.datetime(2023, 10, 8), dt.datetime(2023, 10, 9))
        bodies = list(srv.bodies)
    # page 1: the S2 item and a Landsat item (another collection: not CARD); page 2 is the real
    # empty page that ends the paging (pystac-client stops on a page without features)
    assert len(bodies) == 2 and (rep.pages, rep.inserted, rep.not_card, rep.bad_records) == (1, 1, 1, 0)
    # the second request is the recorded next body as it is (merge: false): echoed search + token
    assert bodies[1] == ES_PAIR[0]["links"][0]["body"]
    assert bodies[0]["collections"] == ["sentinel-2-l2a"] and bodies[0]["limit"] == 100
    (r,) = rows(db_url, db_schema, "reference, obstime, product_identifier, epsg, processing_baseline, assets")
    assert r[0] == "S2A_MSIL2A_20231008T175231_N0509_R141_T13TDE_20231008T233154"
    assert r[1] == dt.datetime(2023, 10, 8, 18, 2, 55, 276000)     # ES: the granule time, 10 min after the name's
    assert r[2:5] == ("stac:sentinel-2-l2a/S2A_13TDE_20231008_0_L2A", 32613, "05.09")
    assets = r[5]
    assert assets["B04"]["href"].endswith("/13/T/DE/2023/10/S2A_13TDE_20231008_0_L2A/B04.tif")
    assert (assets["B04"]["key"], assets["B04"]["scale"], assets["B04"]["offset"]) == ("red", 0.0001, -0.1)
    assert (assets["B08"]["key"], assets["SCL"]["key"], assets["B8A"]["key"]) == ("nir", "scl", "nir08")
    assert assets["_item"]["boa_offset_applied"] is True and assets["_item"]["collection"] == "sentinel-2-l2a"


def test_earth_search_unenforced_cloud_filter_is_applied_client_side(db_url, db_schema):
    """The real page 1 of a CQL2 cloud-cover search: the server returned items above the limit
    and other collections, and its next body lost the filter. Page 2 is not recorded: the
    replay ends with Earth Search's real empty last page."""
    es = page("earth-search-v1", "search_cql2_cloudcover_le40_page1.json")
    with StacServer([es], unrecorded="empty") as srv:
        # the recorded search had no collections nor window: it reports 115,912,757 matches, which
        # would split the window; the cap is raised past it for this replay
        cfg = cfg_for(db_schema, srv.url, collections={"s2": "sentinel-2-c1-l2a"}, max_cloud_cover=40,
                      cloud_filter="cql2", max_per_query=200_000_000)
        set_aoi(db_url, cfg, WORLD)
        rep = catalogue.harvest(db_url, cfg, dt.datetime(2025, 7, 31), dt.datetime(2025, 8, 1))
        bodies = list(srv.bodies)
    assert bodies[0]["filter"] == {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 40.0]}
    assert bodies[0]["filter-lang"] == "cql2-json"
    assert bodies[1] == {"next": "2025-07-31T13:03:25.899000Z,S2B_T24MVV_20250731T130245_L2A,sentinel-2-c1-l2a"}
    # 10 items: 3 c1 L2A (26.0 % and 34.8 % kept, 56.8 % filtered), 2 legacy l2a, 2 l1c, 3 S1 GRD
    assert (rep.inserted, rep.filtered, rep.not_card, rep.bad_records) == (2, 1, 7, 0)
    assert [r[0] for r in rows(db_url, db_schema, "reference")] == [
        "S2B_MSIL2A_20250731T130249_N0511_R095_T24MVV_20250731T132745",
        "S2B_MSIL2A_20250731T131909_N0511_R095_T20EPT_20250731T143919"]
    assert [round(r[0], 2) for r in rows(db_url, db_schema, "cloud_cover")] == [34.76, 26.03]


# ----------------------------------------------------------------------------- Planetary Computer
def test_planetary_computer_token_paging_follows_the_full_body():
    pc = [page("planetary-computer", "search_naip_bbox_limit10_page1.json"),
          page("planetary-computer", "search_naip_bbox_limit10_page2.json")]
    with StacServer(pc, prefix="/api/stac/v1") as srv:
        cfg = cfg_for("t", srv.url, collections={"s2": "naip"}, page_size=10)
        src = StacSource(cfg.catalogue)
        rep = records.HarvestReport()
        with pytest.raises(HarvestError, match="page 3: stac:127.0.0.1:.* answered HTTP 404"):
            list(src.search("s2", dt.datetime(2016, 1, 1), dt.datetime(2022, 1, 1),
                            shapely.box(-73.21, 43.99, -73.12, 44.05), rep))
        bodies = list(srv.bodies)
    # pages 1 and 2 are real; page 3 is not recorded (the replay answers 404)
    assert rep.pages == 2 and rep.read == 20
    assert bodies[1] == pc[0]["links"][0]["body"]
    assert bodies[1]["token"] == "next:naip:vt_m_4307307_nw_18_060_20211029"
    assert bodies[2]["token"] == "next:naip:vt_m_4307307_ne_18_h_20160805"
    assert bodies[2]["bbox"] == [-73.21, 43.99, -73.12, 44.05]       # the whole search is in the link body
    assert rep.bad_records == 20                                     # NAIP items are no Sentinel products


def test_planetary_computer_s2_page(db_url, db_schema):
    pc = page("planetary-computer", "search_s2l2a_datetime_20190101T000001-000010.json")
    with StacServer([pc], prefix="/api/stac/v1") as srv:
        cfg = cfg_for(db_schema, srv.url, max_cloud_cover=100, cloud_filter="query")
        set_aoi(db_url, cfg, WORLD)
        rep = catalogue.harvest(db_url, cfg, dt.datetime(2019, 1, 1), dt.datetime(2019, 1, 1, 0, 1))
        bodies = list(srv.bodies)
    assert bodies[0]["query"] == {"eo:cloud_cover": {"lte": 100.0}}
    # "auto" picks the query extension for the Planetary Computer's own URL
    pc_cfg = cfg_for("t", "https://planetarycomputer.microsoft.com/api/stac/v1", max_cloud_cover=100)
    assert "query" in StacSource(pc_cfg.catalogue).body("s2", dt.datetime(2019, 1, 1), dt.datetime(2019, 1, 2),
                                                        shapely.from_wkt(WORLD))
    assert (rep.pages, rep.inserted, rep.bad_records, len(bodies)) == (1, 33, 0, 1)
    refs = rows(db_url, db_schema, "reference, processing_baseline, product_identifier, assets->'B04'->>'href'")
    assert all(r[1] == "02.12" and r[2].startswith("stac:sentinel-2-l2a/S2") for r in refs)
    assert refs[0][3].startswith("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/")
    assert "?" not in refs[0][3]                                    # stored unsigned


# ----------------------------------------------------------------------------- CDSE STAC v1
def test_cdse_stac_item_points_at_the_reprocessed_safe(db_url, db_schema):
    cdse = page("cdse-stac-v1", "search_s2l2a_S2B_MSIL2A_20200322T074609_N0500_R135_T36NYH.json")
    with StacServer([cdse]) as srv:
        cfg = cfg_for(db_schema, srv.url, page_size=200, max_cloud_cover=90)
        set_aoi(db_url, cfg, WORLD)
        rep = catalogue.harvest(db_url, cfg, dt.datetime(2020, 3, 22), dt.datetime(2020, 3, 23))
        body = srv.bodies[0]
    assert body["filter"] == {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 90.0]} and body["limit"] == 200
    assert rep.inserted == 1
    ((ref, ident, orbit, direction, cloud),) = rows(db_url, db_schema,
                                                    "reference, product_identifier, relative_orbit, orbit_direction, "
                                                    "cloud_cover")
    assert ident == ("/eodata/Sentinel-2/MSI/L2A_N0500/2020/03/22/"
                     "S2B_MSIL2A_20200322T074609_N0500_R135_T36NYH_20230612T214223.SAFE")
    assert (orbit, direction, round(cloud, 2)) == (135, "DESCENDING", 87.94)


def test_cdse_stac_page_size_is_capped_at_200():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="CDSE STAC accepts at most 200 items per page"):
        cfg_for("t", "https://stac.dataspace.copernicus.eu/v1", page_size=500)
    assert cfg_for("t", "https://earth-search.aws.element84.com/v1", page_size=500).catalogue.page == 500


# ----------------------------------------------------------------------------- failures
@pytest.mark.parametrize("fault", ["429", "503", "truncated"])
def test_failures_are_ridden_out(db_url, db_schema, fault):
    with StacServer(ES_PAIR, faults={1: fault}) as srv:
        cfg = cfg_for(db_schema, srv.url)
        set_aoi(db_url, cfg, BOULDER)
        rep = catalogue.harvest(db_url, cfg, dt.datetime(2023, 10, 8), dt.datetime(2023, 10, 9))
        answers = list(srv.answers)
    assert rep.inserted == 1 and rep.bad_records == 0
    assert answers == ([int(fault)] if fault != "truncated" else [200]) + [200, 200]


def test_truncated_twice_fails_the_harvest(db_url, db_schema):
    with StacServer(ES_PAIR, faults={1: "truncated", 2: "truncated"}) as srv:
        cfg = cfg_for(db_schema, srv.url)
        set_aoi(db_url, cfg, BOULDER)
        with pytest.raises(HarvestError, match="answered invalid JSON twice"):
            catalogue.harvest(db_url, cfg, dt.datetime(2023, 10, 8), dt.datetime(2023, 10, 9))


def test_a_server_repeating_its_next_link_is_stopped():
    with StacServer(ES_PAIR, loop=True) as srv:
        src = StacSource(cfg_for("t", srv.url).catalogue)
        with pytest.raises(HarvestError, match="repeats the same next link"):
            list(src.search("s2", dt.datetime(2023, 10, 8), dt.datetime(2023, 10, 9), shapely.from_wkt(BOULDER),
                            records.HarvestReport()))
        assert len(srv.bodies) == 2


def test_dry_run_prints_the_search_body():
    src = StacSource(cfg_for("t", "https://earth-search.aws.element84.com/v1",
                             collections={"s2": "sentinel-2-c1-l2a"}, max_cloud_cover=30).catalogue)
    (line,) = src.describe("s2", dt.datetime(2024, 5, 1), dt.datetime(2024, 6, 1), shapely.from_wkt(BOULDER))
    method, url, body = line.split(" ", 2)
    assert (method, url) == ("POST", "https://earth-search.aws.element84.com/v1/search")
    assert json.loads(body) == {
        "collections": ["sentinel-2-c1-l2a"], "limit": 100, "query": {"eo:cloud_cover": {"lte": 30.0}},
        "datetime": "2024-04-30T23:00:00Z/2024-06-01T01:00:00Z",
        "intersects": {"type": "Polygon", "coordinates": [[[-105.3, 40.0], [-104.9, 40.0], [-104.9, 40.3],
                                                          [-105.3, 40.3], [-105.3, 40.0]]]}}


def test_planetary_computer_signer_signs_blob_hrefs_at_read_time(monkeypatch):
    """``planetary_computer.sign_url`` against a local SAS token endpoint (the answer shape
    ``{"msft:expiry", "token"}`` of the package's code, a DOCUMENTED shape): blob hrefs get
    the token, other hosts are left alone, and the token is asked once per container."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    planetary_computer = pytest.importorskip("planetary_computer")
    from planetary_computer.settings import Settings

    from cbm_ops.harvest.assets import make_signer, signer_for

    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802 - http.server API
            asked.append(self.path)
            body = json.dumps({"msft:expiry": "2099-01-01T00:00:00Z",
                               "token": "st=2026-12-04&se=2099-01-01&sp=rl&sv=2021-06-08&sr=c&sig=abc%3D"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PC_SDK_SAS_URL", f"http://127.0.0.1:{httpd.server_port}/api/sas/v1/token")
        Settings.get.cache_clear()
        planetary_computer.sas.TOKEN_CACHE.clear()
        sign = make_signer("auto", "https://planetarycomputer.microsoft.com/api/stac/v1")
        assert sign is planetary_computer.sign_url
        pc = page("planetary-computer", "search_s2l2a_datetime_20190101T000001-000010.json")
        hrefs = [pc["features"][i]["assets"]["B04"]["href"] for i in range(3)]
        signed = [sign(h) for h in hrefs]
        assert signed[0] == hrefs[0] + "?st=2026-12-04&se=2099-01-01&sp=rl&sv=2021-06-08&sr=c&sig=abc%3D"
        assert asked == ["/api/sas/v1/token/sentinel2l2a01/sentinel2-l2"]         # cached per container
        assert sign("http://127.0.0.1:1/x.tif") == "http://127.0.0.1:1/x.tif"      # not a blob host
        assert signer_for({"catalogue": "https://earth-search.aws.element84.com/v1"})("https://a/b.tif") == \
            "https://a/b.tif"
    finally:
        Settings.get.cache_clear()
        httpd.shutdown()
