"""Catalogue harvest: real response fixtures, naming, and a paged/capped local server."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
from conftest import FIXTURES
from resto_server import RestoServer, synthetic_records

from cbm_ops import catalogue, naming
from cbm_ops.config import AoiConfig
from cbm_ops.parcels import set_aoi

CAT = FIXTURES / "catalogue"
FLANDERS = "POLYGON((3.0 50.7, 4.2 50.7, 4.2 51.2, 3.0 51.2, 3.0 50.7))"


def make_cfg(schema: str, **catalogue_cfg) -> AoiConfig:
    return AoiConfig(name="t", schema=schema, start_date=dt.date(2020, 1, 1),
                     catalogue=catalogue_cfg or {"source": "offline", "path": str(CAT)})


# ----------------------------------------------------------------------------- naming
def test_parse_s2_name_fields():
    p = naming.parse("S2A_MSIL2A_20210401T110621_N0300_R137_T30TTM_20210401T141035.SAFE")
    assert (p.reference, p.sensor, p.card, p.tile, p.relative_orbit, p.processing_baseline) == (
        "S2A_MSIL2A_20210401T110621_N0300_R137_T30TTM_20210401T141035", "2A", "s2", "30TTM", 137, "03.00")
    assert p.sensing_start == dt.datetime(2021, 4, 1, 11, 6, 21)


@pytest.mark.parametrize("tile,epsg", [("31UDS", 32631), ("35MNM", 32735), ("01CDH", 32701),
                                       ("60XWG", 32660), ("33NTA", 32633), ("21JUK", 32721)])
def test_utm_epsg_north_and_south(tile, epsg):
    assert naming.utm_epsg_for_tile(tile) == epsg


def test_card_bs_name_and_relative_orbit():
    # Real CARD-BS product name (CREODIAS /eodata, quoted in ec-jrc/cbm).
    p = naming.parse("S1A_IW_GRDH_1SDV_20200510T063052_20200510T063117_032499_03C37F_5E9B_CARD_BS")
    assert (p.sensor, p.card, p.absolute_orbit) == ("1A", "bs", 32499)
    assert p.relative_orbit == (32499 - 73) % 175 + 1 == 52
    assert naming.store_path(p.reference, "bs", p.sensing_start) == \
        f"Sentinel-1/SAR/CARD-BS/2020/05/10/{p.reference}"


def test_bad_names_are_rejected():
    for bad in ("", "S2A_MSIL2A_2021", "LC08_L2SP_198024_20200101", "S2A_MSIL2A_20210401T110621_N0300_R137_T30TIM_X"):
        with pytest.raises(naming.ProductNameError):
            naming.parse(bad)


# ----------------------------------------------------------------------------- parsers
def test_parse_real_creodias_s2_response():
    page = catalogue.parse_resto_json(json.loads((CAT / "creodias_finder_resto_Sentinel2_L2A_search.json").read_text()))
    assert page.total == 2 and len(page.records) == 2
    assert page.next_url and "page=2" in page.next_url    # CREODIAS' unreliable next link
    recs = [catalogue.normalise(r, "test") for r in page.records]
    assert {r.tile for r in recs} == {"30TTM", "29TQG"}
    r = next(r for r in recs if r.tile == "30TTM")
    assert r.epsg == 32630 and r.sensor == "2A" and r.card == "s2"
    assert r.relative_orbit == 137 and r.orbit_direction == "DESCENDING"
    assert r.product_identifier.startswith("/eodata/Sentinel-2/MSI/L2A/2021/04/01/")
    assert abs(r.cloud_cover - 69.467697) < 1e-9
    assert r.obstime == dt.datetime(2021, 4, 1, 11, 6, 21, 24000)


def test_parse_real_cdse_s1_response_skips_non_card_products():
    doc = json.loads((CAT / "3c893698_query_cdse_results.json").read_text())
    page = catalogue.parse_resto_json(doc)
    assert len(page.records) == len(doc["features"]) == 60
    assert page.total is None                                  # CDSE sent no totalResults here
    assert all(catalogue.normalise(r, "t") is None for r in page.records)   # GRD/SLC/ETA/RAW
    # CREODIAS names a CARD-BS product after its source GRD plus _CARD_BS.
    grd = next(r for r in page.records if r.properties["productType"] == "IW_GRDH_1S")
    props = {k: v for k, v in grd.properties.items() if k != "productIdentifier"}
    card = catalogue.RawRecord(title=grd.title.replace(".SAFE", "_CARD_BS"), start=grd.start,
                               footprint=grd.footprint, properties=props | {"productType": "CARD-BS"})
    rec = catalogue.normalise(card, "t")
    assert rec.card == "bs" and rec.sensor == "1A"
    assert rec.relative_orbit == grd.properties["relativeOrbitNumber"]
    c = grd.footprint.centroid
    assert rec.epsg == 32600 + int((c.x + 180) // 6) + 1
    assert rec.product_identifier == f"/eodata/Sentinel-1/SAR/CARD-BS/{rec.obstime:%Y/%m/%d}/{rec.reference}"


def test_parse_real_atom_feed():
    page = catalogue.parse_atom((CAT / "mundi_search.xml").read_bytes())
    assert page.total == 47 and page.items_per_page == 2 and "startIndex=3" in page.next_url
    assert [r.title[:26] for r in page.records] == ["S2A_MSIL1C_20200815T005251"] * 2
    fp = page.records[0].footprint
    assert fp.is_valid and 144.7 < fp.centroid.x < 145.3 and 13.0 < fp.centroid.y < 13.6   # lat/lon swapped back
    assert catalogue.normalise(page.records[0], "t") is None     # L1C is not extracted


def test_parse_real_stac_collection_southern_tiles():
    page = catalogue.parse_file(CAT / "site2-2020_jun_jul-35MNM.geojson")
    recs = [catalogue.normalise(r, "t") for r in page.records]
    assert len(recs) == 13 and {r.epsg for r in recs} == {32735}
    assert all(r.reference.startswith(("S2A_MSIL2A_", "S2B_MSIL2A_")) for r in recs)


def test_bad_record_is_reported_and_skipped():
    report = catalogue.HarvestReport()
    raw = catalogue.RawRecord(title="S2A_MSIL2A_20210401T110621_N0300_R137_T30TTM_20210401T141035",
                              start=None, footprint=None)
    assert catalogue._normalise_counted(raw, "t", report) is None
    assert len(report.errors) == 1 and "no footprint" in report.errors[0]


# ----------------------------------------------------------------------------- harvest
def _count(url, schema, where="true"):
    with psycopg.connect(url) as c:
        return c.execute(f'SELECT count(*) FROM "{schema}".dias_catalogue WHERE {where}').fetchone()[0]


def test_offline_harvest_of_real_fixtures_is_idempotent(db_url, db_schema):
    cfg = make_cfg(db_schema)
    set_aoi(db_url, cfg, "POLYGON((-10 -10, 40 -10, 40 50, -10 50, -10 -10))")
    start, end = dt.datetime(2020, 1, 1), dt.datetime(2024, 1, 1)
    r1 = catalogue.harvest(db_url, cfg, start, end)
    # 2 CREODIAS + 13 STAC 35MNM items are L2A inside the AOI; S2A_28QCH (16 W) is outside.
    assert (r1.inserted, r1.existing, len(r1.errors)) == (15, 0, 0)
    assert r1.enqueued == 15 * 3            # scl, s2_10m, s2_20m
    r2 = catalogue.harvest(db_url, cfg, start, end)
    assert (r2.inserted, r2.existing, r2.enqueued) == (0, 15, 0)
    assert _count(db_url, db_schema) == 15
    assert _count(db_url, db_schema, "epsg = 32735 AND tile = '35MNM'") == 13
    assert _count(db_url, db_schema, "ST_GeometryType(footprint) = 'ST_MultiPolygon'") == 15


@pytest.mark.parametrize("fmt", ["json", "atom"])
def test_resto_harvest_pages_and_splits_capped_windows(db_url, db_schema, fmt):
    records = synthetic_records(n_s2=57, n_bs=12)
    with RestoServer(records, page_max=10, cap=25, fail_once=2) as srv:
        cfg = make_cfg(db_schema, source="resto", format=fmt, page_size=50, max_per_query=25,
                       url=srv.url + "/resto/api/collections/{collection}/search.json",
                       retries=3, min_window_hours=1)
        set_aoi(db_url, cfg, FLANDERS)
        start, end = dt.datetime(2023, 12, 1), dt.datetime(2024, 6, 1)
        report = catalogue.harvest(db_url, cfg, start, end, cards=["s2", "bs"])
        assert report.splits >= 2                # 57 S2 records > cap 25 needs splitting
        assert report.inserted == 57 + 12 and report.errors == []
        assert _count(db_url, db_schema, "card = 's2'") == 57
        assert _count(db_url, db_schema, "card = 'bs'") == 12
        with psycopg.connect(db_url) as c:
            refs = {r[0] for r in c.execute(f'SELECT reference FROM "{db_schema}".dias_catalogue')}
        assert refs == {naming.strip_extension(r["title"]) for r in records}
        assert any("page=2" in p for p in srv.requests)
        # re-harvest: no new rows
        again = catalogue.harvest(db_url, cfg, start, end, cards=["s2", "bs"])
        assert again.inserted == 0 and again.existing == 69


def test_resto_harvest_without_total_detects_the_cap(db_url, db_schema):
    records = synthetic_records(n_s2=40, n_bs=0)
    with RestoServer(records, page_max=10, cap=25, exact=False) as srv:
        cfg = make_cfg(db_schema, source="resto", page_size=10, max_per_query=25,
                       url=srv.url + "/resto/api/collections/{collection}/search.json")
        set_aoi(db_url, cfg, FLANDERS)
        report = catalogue.harvest(db_url, cfg, dt.datetime(2023, 12, 1), dt.datetime(2024, 6, 1), cards=["s2"])
    assert report.splits >= 1 and report.inserted == 40


def test_unsplittable_window_raises_instead_of_truncating(db_url, db_schema):
    # 30 records at the same instant cannot be split below the cap of 25.
    recs = synthetic_records(n_s2=30, n_bs=0)
    for r in recs:
        r["startDate"] = r["completionDate"] = "2024-01-05T10:56:21.024Z"
    with RestoServer(recs, page_max=10, cap=25) as srv:
        cfg = make_cfg(db_schema, source="resto", page_size=10, max_per_query=25,
                       url=srv.url + "/resto/api/collections/{collection}/search.json", min_window_hours=24)
        set_aoi(db_url, cfg, FLANDERS)
        with pytest.raises(catalogue.HarvestError, match="exceeds the catalogue cap"):
            catalogue.harvest(db_url, cfg, dt.datetime(2024, 1, 4), dt.datetime(2024, 1, 6), cards=["s2"])


def test_republished_baseline_is_new_row_and_supersedes_unprocessed(db_url, db_schema):
    recs = synthetic_records(n_s2=2, n_bs=0)
    title = recs[0]["title"].replace("_N0510_", "_N0511_").replace("T140000", "T230000")
    newer = dict(recs[0], id="s2-new", title=title)
    recs.append(newer)
    with RestoServer(recs) as srv:
        cfg = make_cfg(db_schema, source="resto", url=srv.url + "/resto/api/collections/{collection}/search.json")
        set_aoi(db_url, cfg, FLANDERS)
        report = catalogue.harvest(db_url, cfg, dt.datetime(2023, 12, 1), dt.datetime(2024, 6, 1), cards=["s2"])
    assert report.inserted == 3 and report.superseded == 1
    assert _count(db_url, db_schema, "status = 'Superseded' AND processing_baseline = '05.10'") == 1
    with psycopg.connect(db_url) as c:
        n = c.execute(f"""SELECT count(DISTINCT obsid) FROM "{db_schema}".scene_stages""").fetchone()[0]
    assert n == 2


def test_resto_server_error_is_reported(db_url, db_schema):
    with RestoServer(synthetic_records(5, 0)) as srv:
        cfg = make_cfg(db_schema, source="resto", retries=0,
                       url=srv.url + "/resto/api/collections/{collection}/missing/search.json")
        set_aoi(db_url, cfg, FLANDERS)
        srv.fail_once = 1
        with pytest.raises(catalogue.HarvestError, match="HTTP 503"):
            catalogue.harvest(db_url, cfg, dt.datetime(2023, 12, 1), dt.datetime(2024, 6, 1), cards=["s2"])
