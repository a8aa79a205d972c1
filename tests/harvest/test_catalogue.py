"""Catalogue harvest: real response fixtures, naming, and a paged/capped local server."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
from conftest import FIXTURES
from resto_server import RestoServer, synthetic_records
from synthetic import set_aoi

from cbm_ops import errors, naming
from cbm_ops.config import AoiConfig
from cbm_ops.harvest import catalogue, parsers, records

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
    page = parsers.parse_resto_json(json.loads((CAT / "creodias_finder_resto_Sentinel2_L2A_search.json").read_text()))
    assert page.total == 2 and len(page.records) == 2
    assert page.next_url and "page=2" in page.next_url    # CREODIAS' unreliable next link
    recs = [records.normalise(r, "test") for r in page.records]
    assert {r.tile for r in recs} == {"30TTM", "29TQG"}
    r = next(r for r in recs if r.tile == "30TTM")
    assert r.epsg == 32630 and r.sensor == "2A" and r.card == "s2"
    assert r.relative_orbit == 137 and r.orbit_direction == "DESCENDING"
    assert r.product_identifier.startswith("/eodata/Sentinel-2/MSI/L2A/2021/04/01/")
    assert abs(r.cloud_cover - 69.467697) < 1e-9
    assert r.obstime == dt.datetime(2021, 4, 1, 11, 6, 21, 24000)


def test_parse_real_cdse_s1_response_skips_non_card_products():
    doc = json.loads((CAT / "3c893698_query_cdse_results.json").read_text())
    page = parsers.parse_resto_json(doc)
    assert len(page.records) == len(doc["features"]) == 60
    assert page.total is None                                  # CDSE sent no totalResults here
    assert all(records.normalise(r, "t") is None for r in page.records)   # GRD/SLC/ETA/RAW
    # CREODIAS names a CARD-BS product after its source GRD plus _CARD_BS.
    grd = next(r for r in page.records if r.properties["productType"] == "IW_GRDH_1S")
    props = {k: v for k, v in grd.properties.items() if k != "productIdentifier"}
    card = records.RawRecord(title=grd.title.replace(".SAFE", "_CARD_BS"), start=grd.start,
                               footprint=grd.footprint, properties=props | {"productType": "CARD-BS"})
    rec = records.normalise(card, "t")
    assert rec.card == "bs" and rec.sensor == "1A"
    assert rec.relative_orbit == grd.properties["relativeOrbitNumber"]
    c = records.footprint_of(grd).centroid
    assert rec.epsg == 32600 + int((c.x + 180) // 6) + 1
    assert rec.product_identifier == f"/eodata/Sentinel-1/SAR/CARD-BS/{rec.obstime:%Y/%m/%d}/{rec.reference}"


def test_parse_real_atom_feed():
    page = parsers.parse_atom((CAT / "mundi_search.xml").read_bytes())
    assert page.total == 47 and page.items_per_page == 2 and "startIndex=3" in page.next_url
    assert [r.title[:26] for r in page.records] == ["S2A_MSIL1C_20200815T005251"] * 2
    fp = records.footprint_of(page.records[0])
    assert fp.is_valid and 144.7 < fp.centroid.x < 145.3 and 13.0 < fp.centroid.y < 13.6   # lat/lon swapped back
    assert records.normalise(page.records[0], "t") is None     # L1C is not extracted


def test_parse_real_stac_collection_southern_tiles():
    page = parsers.parse_file(CAT / "site2-2020_jun_jul-35MNM.geojson")
    recs = [records.normalise(r, "t") for r in page.records]
    assert len(recs) == 13 and {r.epsg for r in recs} == {32735}
    assert all(r.reference.startswith(("S2A_MSIL2A_", "S2B_MSIL2A_")) for r in recs)


def test_bad_record_is_reported_and_skipped():
    report = records.HarvestReport()
    raw = records.RawRecord(title="S2A_MSIL2A_20210401T110621_N0300_R137_T30TTM_20210401T141035",
                              start=None, footprint=None)
    assert records._normalise_counted(raw, "t", report) is None
    assert len(report.errors) == 1 and "no sensing date" in report.errors[0]


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
        with pytest.raises(errors.HarvestError, match="exceeds the catalogue cap"):
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
        with pytest.raises(errors.HarvestError, match="HTTP 503"):
            catalogue.harvest(db_url, cfg, dt.datetime(2023, 12, 1), dt.datetime(2024, 6, 1), cards=["s2"])


# ----------------------------------------------------------------------------- per-record isolation
def _s2_time(title):
    return naming.parse(title).sensing_start


def bad_resto_records():
    """SYNTHETIC records with one bad field each (and two good S2 + one good BS record).

    Returns the records and, per broken record, (reference, json field, atom field, kind).
    """
    recs = synthetic_records(n_s2=8, n_bs=4)
    s2 = [r for r in recs if r["collection"] == "Sentinel2"]
    bs = [r for r in recs if r["collection"] == "Sentinel1"]
    square = s2[0]["geometry"]
    ref = lambda r: naming.strip_extension(r["title"])   # noqa: E731
    want = []

    def brk(r, json_field, atom_field, kind="bad", **kw):
        r.update(_when=r["startDate"], _geom=square, **kw)
        want.append((ref(r), json_field, atom_field, kind))

    brk(s2[0], "startDate", "beginPosition", startDate="2024-13-45T99:00:00Z")       # garbage date
    brk(s2[1], "startDate", "beginPosition", startDate="")                           # absent date
    brk(s2[3], "cloudCover", "cloudCover", cloudCover="n/a")                         # non-numeric
    brk(s2[4], "cloudCover", "cloudCover", cloudCover=150.0)                         # out of range
    brk(s2[5], "footprint", "footprint", geometry={"type": "Polygon", "coordinates": [[[2.9, 50.4], [4.5]]]},
        _pos="50.4 2.9 50.4")                                                        # broken footprint
    brk(s2[6], "title", "title", title="S2A_MSIL2A_garbage.SAFE")                    # unparsable name
    brk(bs[0], "relativeOrbitNumber", "relativeOrbitNumber", relativeOrbitNumber="eighty-eight")
    brk(bs[1], "productType", "productType", "not_card", title=bs[1]["title"].removesuffix("_CARD_BS"),
        productType="CARD-XYZ", _ptype="CARD-BS")                                    # unknown product type
    brk(bs[2], "productType", "productType", productType="CARD-COH6", _ptype="CARD-BS")  # contradicts name
    s2[2].update(startDate="1970-01-01T00:00:00Z", _when=s2[2]["startDate"])         # plausible, wrong: flagged
    return recs, want, ref(s2[2]), _s2_time(s2[2]["title"])


@pytest.mark.parametrize("fmt", ["json", "atom"])
def test_resto_bad_records_are_reported_and_skipped(db_url, db_schema, fmt, caplog):
    recs, want, flagged_ref, flagged_time = bad_resto_records()
    with RestoServer(recs, page_max=3, cap=100) as srv:
        cfg = make_cfg(db_schema, source="resto", format=fmt, page_size=3,
                       url=srv.url + "/resto/api/collections/{collection}/search.json")
        set_aoi(db_url, cfg, FLANDERS)
        with caplog.at_level("INFO", logger="cbm_ops.catalogue"):
            report = catalogue.harvest(db_url, cfg, dt.datetime(2023, 12, 1), dt.datetime(2024, 6, 1),
                                       cards=["s2", "bs"])
    print(f"\n--- {fmt}: harvest report lines")
    for line in report.lines(None):
        print(line)
    got = {(s.reference, s.field, s.kind) for s in report.skipped}
    field_of = 1 if fmt == "json" else 2
    assert got == {(w[0], w[field_of], w[3]) for w in want}
    # the rest of every page is committed: 8 - 6 S2 (one of them flagged) and 4 - 3 BS
    assert (report.inserted, report.bad_records, report.not_card) == (3, 8, 1)
    assert _count(db_url, db_schema, "card = 's2'") == 2 and _count(db_url, db_schema, "card = 'bs'") == 1
    # the 1970 date is flagged, the product name's date is used
    assert [(f.reference, f.field) for f in report.flagged] == [
        (flagged_ref, "startDate" if fmt == "json" else "beginPosition")]
    assert "1970-01-01" in report.flagged[0].value
    with psycopg.connect(db_url) as c:
        obstime = c.execute(f'SELECT obstime FROM "{db_schema}".dias_catalogue WHERE reference = %s',
                            (flagged_ref,)).fetchone()[0]
        log_rows = c.execute(f'SELECT card, status, inserted, skipped, flagged, not_card FROM '
                             f'"{db_schema}".harvest_log ORDER BY id').fetchall()
    assert obstime == flagged_time
    assert log_rows == [("s2", "ok", 2, 6, 1, 0), ("bs", "ok", 1, 2, 0, 1)]
    # the task log lists every skipped record with its field
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for reference, *_ in want:
        assert reference in logged
    assert "records skipped" in logged
    d = report.as_dict()
    assert d["bad_records"] == 8 and d["flagged_records"] == 1 and len(d["skipped"]) == 8
    json.dumps(d, default=str)                  # fits an XCom


@pytest.mark.parametrize("fmt,mode,match", [("json", "text", "invalid JSON"),
                                            ("json", "json", "not a resto FeatureCollection"),
                                            ("atom", "text", "invalid XML")])
def test_unreadable_page_fails_the_harvest_with_a_clear_error(db_url, db_schema, fmt, mode, match):
    recs = synthetic_records(n_s2=7, n_bs=0)
    with RestoServer(recs, page_max=3, cap=100, garbage_page=(2, mode)) as srv:
        cfg = make_cfg(db_schema, source="resto", format=fmt, page_size=3,
                       url=srv.url + "/resto/api/collections/{collection}/search.json")
        set_aoi(db_url, cfg, FLANDERS)
        with pytest.raises(errors.HarvestError, match=f"s2 .* page 2: .*{match}"):
            catalogue.harvest(db_url, cfg, dt.datetime(2023, 12, 1), dt.datetime(2024, 6, 1), cards=["s2"])
    assert _count(db_url, db_schema) == 3                    # page 1 is kept
    with psycopg.connect(db_url) as c:
        status, error = c.execute(f'SELECT status, error FROM "{db_schema}".harvest_log').fetchone()
    assert status == "failed" and match in error


def _stac_with_bad_items(path):
    doc = json.loads((CAT / "site2-2020_jun_jul-35MNM.geojson").read_text())
    f = doc["features"]
    f[0]["properties"]["datetime"] = "yesterday"                       # garbage date
    f[1]["properties"]["eo:cloud_cover"] = "cloudy"                    # non-numeric cloud cover
    f[2]["geometry"] = None                                            # absent footprint
    f[3]["properties"]["s2:product_uri"] = "not-a-sentinel-product"    # unparsable name
    f[4]["properties"]["sat:relative_orbit"] = 78.5                    # orbit not an integer
    f[5]["properties"]["datetime"] = "1970-01-01T00:00:00Z"            # flagged
    path.write_text(json.dumps(doc))
    name = lambda i: naming.strip_extension(f[i]["properties"]["s2:product_uri"])   # noqa: E731
    return {(name(0), "datetime"), (name(1), "eo:cloud_cover"), (name(2), "footprint"),
            ("not-a-sentinel-product", "title"), (name(4), "sat:relative_orbit")}, name(5)


def test_offline_directory_with_bad_files_and_records(db_url, db_schema, tmp_path):
    bad_stac, flagged = _stac_with_bad_items(tmp_path / "stac_35MNM.geojson")
    creo = json.loads((CAT / "creodias_finder_resto_Sentinel2_L2A_search.json").read_text())
    creo["features"][1]["properties"]["startDate"] = "2021-04-31T11:00:00Z"   # no April 31st
    (tmp_path / "creodias.json").write_text(json.dumps(creo))
    atom = (CAT / "mundi_search.xml").read_bytes()
    (tmp_path / "mundi.xml").write_bytes(atom)                                 # L1C: not CARD
    (tmp_path / "broken.json").write_text('{"type": "FeatureCollection", "features": [')
    (tmp_path / "list.json").write_text("[1, 2]")
    cfg = make_cfg(db_schema, source="offline", path=str(tmp_path))
    set_aoi(db_url, cfg, "POLYGON((-10 -10, 40 -10, 40 50, -10 50, -10 -10))")
    report = catalogue.harvest(db_url, cfg, dt.datetime(1969, 1, 1), dt.datetime(2024, 1, 1), cards=["s2"])
    print("\n--- offline directory: harvest report lines")
    for line in report.lines(None):
        print(line)
    creo_bad = naming.strip_extension(creo["features"][1]["properties"]["title"])
    got = {(s.reference, s.field) for s in report.skipped if s.kind == "bad"}
    assert got == bad_stac | {(creo_bad, "startDate")}
    assert {(s.reference, s.kind) for s in report.skipped if s.kind == "file"} == {
        ("broken.json", "file"), ("list.json", "file")}
    assert report.not_card == 2                                                # the two L1C entries
    # 13 STAC - 5 bad (the flagged one is committed), 2 CREODIAS - 1 bad
    assert report.inserted == 8 + 1 == _count(db_url, db_schema)
    assert [f.reference for f in report.flagged] == [flagged]
    assert _count(db_url, db_schema, f"reference = '{flagged}' AND obstime > '2020-01-01'") == 1


def test_record_checks_of_normalise():
    """Each check of normalise on one real record (CREODIAS fixture), field by field."""
    page = parsers.parse_resto_json(json.loads((CAT / "creodias_finder_resto_Sentinel2_L2A_search.json").read_text()))
    raw = page.records[0]

    def check(expect_field, **props):
        r = records.RawRecord(title=raw.title, start=props.pop("start", raw.start), footprint=props.pop(
            "footprint", raw.footprint), properties=raw.properties | props)
        with pytest.raises(errors.RecordError) as e:
            records.normalise(r, "t")
        assert e.value.field == expect_field, e.value
        return str(e.value)

    assert "not an ISO 8601" in check("startDate", start="01/04/2021")
    assert "not a number" in check("cloudCover", cloudCover="NaN%")
    assert "outside" in check("cloudCover", cloudCover=-1)
    assert "outside" in check("relativeOrbitNumber", relativeOrbitNumber=400)
    assert "lon/lat" in check("footprint", footprint={"type": "Polygon", "coordinates": [
        [[50.0, 200.0], [51.0, 200.0], [51.0, 201.0], [50.0, 200.0]]]})
    assert "not polygonal" in check("footprint", footprint={"type": "Point", "coordinates": [1.0, 2.0]})
    # what Python's JSON parser accepts: Infinity, 1e999, a 400-digit integer
    assert "non-finite" in check("footprint", footprint={"type": "Polygon", "coordinates": [
        [[3.0, 50.0], [float("inf"), 50.0], [4.0, 51.0], [3.0, 50.0]]]})
    assert "not a number" in check("relativeOrbitNumber", relativeOrbitNumber=10 ** 400)
    with pytest.raises(errors.HarvestError, match="totalResults is not a number"):
        parsers.parse_resto_json(json.loads('{"type": "FeatureCollection", "features": [], '
                                              '"properties": {"totalResults": Infinity}}'))
    # within the tolerance the catalogue's time is kept; beyond it the name's time is used
    near = records.RawRecord(title=raw.title, start="2021-04-01T11:36:21Z", footprint=raw.footprint,
                               properties=raw.properties)
    rec, flags = records.normalise_checked(near, "t")
    assert flags == [] and rec.obstime == dt.datetime(2021, 4, 1, 11, 36, 21)
    rec, flags = records.normalise_checked(near, "t", dt.timedelta(minutes=10))
    assert len(flags) == 1 and rec.obstime == dt.datetime(2021, 4, 1, 11, 6, 21)
    # a relative orbit that disagrees with the name is flagged; the name's orbit is used
    other = records.RawRecord(title=raw.title, start=raw.start, footprint=raw.footprint,
                                properties=raw.properties | {"relativeOrbitNumber": 12, "orbitDirection": "up"})
    rec, flags = records.normalise_checked(other, "t")
    assert rec.relative_orbit == 137 and rec.orbit_direction is None
    assert {f.field for f in flags} == {"relativeOrbitNumber", "orbitDirection"}
