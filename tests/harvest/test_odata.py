"""CDSE OData harvest against a local replay of the REAL recorded responses
(``../shared/data/catalogue-responses/cdse-odata``, ``eodag-provider-responses``).

What is real and what is derived, per test: the five cdsetool pages (47 Sentinel-1 AUX
products, paging by nextLink) and the CDSE S2 L1C page are recordings of
catalogue.dataspace.copernicus.eu; the CARD-BS record is a CREODIAS OData record (derived
from CloudFerro test data, content believed real). No recording of a CDSE S2 L2A OData record
exists, so the L2A records here are DERIVED from the real L1C record (name, productType and
S3Path changed, nothing else). The 422 body and the 429 body are DOCUMENTED shapes.
"""

from __future__ import annotations

import copy
import datetime as dt
import json

import psycopg
import pytest
from conftest import shared
from odata_server import CDSE, ODataServer, recorded_pages
from synthetic import set_aoi

from cbm_ops.config import AoiConfig
from cbm_ops.errors import HarvestError
from cbm_ops.harvest import catalogue, parsers, records
from cbm_ops.harvest.odata import ODataSource
from cbm_ops.harvest.sources import Query

ODATA = "catalogue-responses", "cdse-odata"
# The real L1C granule 54PXA (Pacific, 142-143 E, 13-14 N) and the AOI around it.
AOI_54PXA = "POLYGON((142.0 13.0, 143.5 13.0, 143.5 14.5, 142.0 14.5, 142.0 13.0))"


def cfg_for(schema: str, url: str, **cat) -> AoiConfig:
    return AoiConfig.model_validate({
        "name": "t", "schema": schema, "start_date": "2014-01-01", "cards": ["s2", "bs"],
        "catalogue": {"source": "odata", "url": url, "retries": 3, **cat}})


def real_l1c() -> dict:
    doc = json.loads(shared("catalogue-responses", "eodag-provider-responses", "cop_dataspace_search.json").read_text())
    return doc["value"][0]


def real_card_bs() -> dict:
    return json.loads(shared(*ODATA, "derived_creodias_odata_CARD-BS_query_response.json").read_text())["value"][0]


def derived_l2a(day: int, *, baseline: str = "N0500", generation: str = "20230413T212505",
                folder: str = "L2A_N0500", modified: str | None = None) -> dict:
    """DERIVED: the real L1C record of 2020-08-08 as an S2MSI2A product sensed ``day`` days
    later (name, productType, S3Path and ContentDate changed)."""
    p = copy.deepcopy(real_l1c())
    t = dt.datetime(2020, 8, 8, 1, 3, 11) + dt.timedelta(days=day)
    name = f"S2A_MSIL2A_{t:%Y%m%dT%H%M%S}_{baseline}_R045_T54PXA_{generation}.SAFE"
    p.update(Id=f"derived-{day}-{baseline}", Name=name,
             S3Path=f"/eodata/Sentinel-2/MSI/{folder}/{t:%Y/%m/%d}/{name}",
             ContentDate={"Start": f"{t:%Y-%m-%dT%H:%M:%S}.024000Z", "End": f"{t:%Y-%m-%dT%H:%M:%S}.024000Z"})
    if modified:
        p["ModificationDate"] = modified
    for a in p["Attributes"]:
        if a["Name"] == "productType":
            a["Value"] = "S2MSI2A"
    return p


def _count(url, schema, where="true"):
    with psycopg.connect(url) as c:
        return c.execute(f'SELECT count(*) FROM "{schema}".dias_catalogue WHERE {where}').fetchone()[0]


def _log(url, schema):
    with psycopg.connect(url) as c:
        return c.execute(f'SELECT card, status, source, pages, read, inserted, not_card, skipped, error '
                         f'FROM "{schema}".harvest_log ORDER BY id').fetchall()


# ----------------------------------------------------------------------------- recorded pages
def test_recorded_pages_are_followed_verbatim_and_aux_products_are_not_card(db_url, db_schema):
    pages = recorded_pages(shared(*ODATA))
    with ODataServer(pages=pages) as srv:
        cfg = cfg_for(db_schema, srv.url, page_size=10)
        set_aoi(db_url, cfg, AOI_54PXA)
        rep = catalogue.harvest(db_url, cfg, dt.datetime(2014, 4, 5), dt.datetime(2014, 4, 14), cards=["bs"])
        requests = list(srv.requests)
    # 5 recorded pages of 10+10+10+10+7 products, all Sentinel-1 AUX: not CARD, none bad.
    assert (rep.pages, rep.read, rep.not_card, rep.bad_records, rep.inserted) == (5, 47, 47, 0, 0)
    # requests 2..5 are the recorded nextLinks as the server wrote them ($skip last on the first
    # link, before $expand on the later ones), host rewritten to the replay
    for req, page in zip(requests[1:], pages[:4], strict=True):
        assert srv.base + req == page["@odata.nextLink"].replace(CDSE, srv.base)
    assert "%24skip=10" in requests[1] and requests[1].endswith("%24skip=10")
    assert _log(db_url, db_schema) == [("bs", "ok", f"odata:{srv.url.split('/')[2]}", 5, 47, 0, 47, 0, None)]


def test_first_request_is_the_documented_filter():
    cfg = cfg_for("t", "https://catalogue.dataspace.copernicus.eu/odata/v1", max_cloud_cover=80)
    src = ODataSource(cfg.catalogue)
    import shapely

    line, readable = src.describe("s2", dt.datetime(2025, 3, 1), dt.datetime(2025, 3, 31, 23, 59, 59),
                           shapely.from_wkt(AOI_54PXA))
    from urllib.parse import parse_qs, urlsplit

    assert line.startswith("GET https://catalogue.dataspace.copernicus.eu/odata/v1/Products?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(line[4:]).query).items()}
    assert q["$filter"] == (
        "Collection/Name eq 'SENTINEL-2' and Attributes/OData.CSC.StringAttribute/any(att:att/Name eq "
        "'productType' and att/OData.CSC.StringAttribute/Value eq 'S2MSI2A') and "
        "OData.CSC.Intersects(area=geography'SRID=4326;POLYGON ((142 13, 143.5 13, 143.5 14.5, 142 14.5, 142 13))') "
        "and ContentDate/Start ge 2025-02-28T23:00:00.000Z and ContentDate/Start le 2025-04-01T00:59:59.000Z and "
        "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
        "att/OData.CSC.DoubleAttribute/Value le 80.00)")
    assert (q["$top"], q["$orderby"], q["$expand"], q["$count"]) == (
        "100", "ContentDate/Start asc", "Attributes", "true")
    assert readable == "  $filter = " + q["$filter"]


def test_cli_dry_run_prints_the_queries_without_a_database(tmp_path, monkeypatch, capsys):
    from cbm_ops.cli import main

    monkeypatch.delenv("CBM_DB_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_CBM_DB", raising=False)
    aoi = tmp_path / "live.yaml"
    aoi.write_text(f"name: live\nstart_date: 2025-03-01\naoi_wkt: {AOI_54PXA}\ncards: [s2, bs]\n")
    assert main(["harvest", "--aoi", str(aoi), "--start", "2025-03-01", "--end", "2025-03-31", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# live: catalogue odata:catalogue.dataspace.copernicus.eu")
    assert [ln.split(":", 1)[0] for ln in out[1:]] == ["s2", "s2", "bs", "bs"]
    assert out[1].startswith("s2: GET https://catalogue.dataspace.copernicus.eu/odata/v1/Products?%24filter=")
    assert "Value eq 'CARD-BS')" in out[4]


@pytest.mark.parametrize("case", ["next_omitted", "http_422", "count_over_cap"])
def test_skip_cap_splits_the_window_and_loses_nothing(case):
    """The 47 real AUX products, served with the service's $skip cap scaled down to 20."""
    pool = [p for page in recorded_pages(shared(*ODATA)) for p in page["value"]]
    names = {p["Name"].removesuffix(".SAFE").removesuffix(".zip") for p in pool}
    kw = {"max_per_query": 25} if case == "count_over_cap" else {}
    with ODataServer(pool=pool, max_skip=20, omit_next_at_cap=(case != "http_422"), filter_type=False) as srv:
        cfg = cfg_for("t", srv.url, page_size=10, max_skip=20, min_window_hours=0.5, **kw)
        src = ODataSource(cfg.catalogue)
        rep = records.HarvestReport()
        import shapely

        query = Query("aux", "SENTINEL-1", "AUX")
        got = [r.title for r in src.search_raw(query, dt.datetime(2014, 4, 5, 1), dt.datetime(2014, 4, 13, 23),
                                               shapely.from_wkt(AOI_54PXA), rep)]
        answers = list(srv.answers)
    assert {t.removesuffix(".SAFE").removesuffix(".zip") for t in got} == names     # nothing lost
    assert rep.splits >= 1
    if case == "http_422":
        assert 422 in answers
    else:
        assert 422 not in answers
    if case == "count_over_cap":
        assert len(got) == 47      # split before paging: no product read twice


def test_a_window_that_cannot_be_split_below_the_cap_fails_clearly():
    """22 of the real AUX products share one ContentDate/Start (2014-04-06T13:...): with a cap
    of 20 no split can separate them, and the harvest says so instead of truncating."""
    import shapely

    pool = [p for page in recorded_pages(shared(*ODATA)) for p in page["value"]]
    with ODataServer(pool=pool, filter_type=False) as srv:
        cfg = cfg_for("t", srv.url, page_size=10, max_per_query=20, min_window_hours=0.5)
        with pytest.raises(HarvestError, match=r"still exceeds the catalogue cap \(22 records, cap 20\)"):
            list(ODataSource(cfg.catalogue).search_raw(
                Query("aux", "SENTINEL-1", "AUX"), dt.datetime(2014, 4, 5, 1), dt.datetime(2014, 4, 13, 23),
                shapely.from_wkt(AOI_54PXA), records.HarvestReport()))


# ----------------------------------------------------------------------------- failures
def test_429_503_and_a_changed_context_are_ridden_out(db_url, db_schema):
    pool = [derived_l2a(d) for d in range(25)] + [real_l1c(), real_card_bs()]
    faults = {1: "429", 3: "503", 4: "context:$metadata#Products(Attributes())(Assets())",
              5: "context:$metadata#Products(Attributes(),Assets())"}
    with ODataServer(pool=pool, faults=faults) as srv:
        cfg = cfg_for(db_schema, srv.url, page_size=10)
        set_aoi(db_url, cfg, AOI_54PXA)
        rep = catalogue.harvest(db_url, cfg, dt.datetime(2020, 8, 1), dt.datetime(2020, 9, 30), cards=["s2"])
        answers = list(srv.answers)
    assert answers[:3] == [429, 200, 503]
    assert (rep.pages, rep.inserted, rep.bad_records, rep.not_card) == (3, 25, 0, 0)
    assert _count(db_url, db_schema, "product_identifier LIKE '/eodata/Sentinel-2/MSI/L2A_N0500/2020/%'") == 25
    assert _count(db_url, db_schema,
                  "abs(cloud_cover - 95.136736479015) < 1e-4 AND tile = '54PXA' AND epsg = 32654") == 25


def test_truncated_page_is_asked_again_then_fails_keeping_what_was_read(db_url, db_schema):
    pool = [derived_l2a(d) for d in range(25)]
    with ODataServer(pool=pool, faults={2: "truncated"}) as srv:
        cfg = cfg_for(db_schema, srv.url, page_size=10, retries=0)
        set_aoi(db_url, cfg, AOI_54PXA)
        rep = catalogue.harvest(db_url, cfg, dt.datetime(2020, 8, 1), dt.datetime(2020, 9, 30), cards=["s2"])
        assert (rep.pages, rep.inserted) == (3, 25)        # the truncated page 2 was asked again
    with ODataServer(pool=pool, faults={2: "truncated", 3: "truncated"}) as srv:
        cfg = cfg_for(db_schema + "x", srv.url, page_size=10, retries=0)
        set_aoi(db_url, cfg, AOI_54PXA)
        with pytest.raises(HarvestError, match=r"s2 2020-07-31 23:00..2020-09-30 01:00 page 2: catalogue answered "
                                               r"invalid JSON twice"):
            catalogue.harvest(db_url, cfg, dt.datetime(2020, 8, 1), dt.datetime(2020, 9, 30), cards=["s2"])
        assert _count(db_url, cfg.schema) == 10             # page 1 is kept
        assert _log(db_url, cfg.schema)[0][1] == "failed"
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{cfg.schema}" CASCADE')


def test_next_link_to_another_host_is_refused():
    import shapely

    with ODataServer(pages=recorded_pages(shared(*ODATA)), rewrite=False) as srv:
        src = ODataSource(cfg_for("t", srv.url, page_size=10).catalogue)
        with pytest.raises(HarvestError, match="nextLink leads to https://catalogue.dataspace.copernicus.eu, not "):
            list(src.search_raw(Query("bs", "SENTINEL-1", "CARD-BS"), dt.datetime(2014, 4, 5),
                                dt.datetime(2014, 4, 14), shapely.from_wkt(AOI_54PXA), records.HarvestReport()))
        assert len(srv.requests) == 1


# ----------------------------------------------------------------------------- records
def test_card_bs_record_and_republished_l2a(db_url, db_schema):
    """The CREODIAS CARD-BS record, and an S2 datatake listed twice: the original (N0212, L2A/)
    and its Collection-1 reprocessing (N0500, L2A_N0500/), as CDSE lists both."""
    card = real_card_bs()
    orig = derived_l2a(3, baseline="N0212", generation="20200808T040000", folder="L2A")
    repro = derived_l2a(3)
    pool = [card, orig, repro]
    with ODataServer(pool=pool) as srv:
        cfg = cfg_for(db_schema, srv.url)
        set_aoi(db_url, cfg, "MULTIPOLYGON(((142.0 13.0, 143.5 13.0, 143.5 14.5, 142.0 14.5, 142.0 13.0)),"
                             "((28 51, 33.5 51, 33.5 54, 28 54, 28 51)))")
        rep = catalogue.harvest(db_url, cfg, dt.datetime(2020, 8, 1), dt.datetime(2024, 3, 1))
    assert (rep.inserted, rep.bad_records, rep.superseded) == (3, 0, 1)
    with psycopg.connect(db_url) as c:
        rows = c.execute(f'SELECT reference, status, superseded_by IS NOT NULL, product_identifier, relative_orbit, '
                         f'orbit_direction FROM "{db_schema}".dias_catalogue ORDER BY reference').fetchall()
        stages = c.execute(f'SELECT c.reference, count(*) FROM "{db_schema}".scene_stages s JOIN '
                           f'"{db_schema}".dias_catalogue c ON c.id = s.obsid GROUP BY 1 ORDER BY 1').fetchall()
    bs, old, new = rows
    assert bs[0] == card["Name"] and bs[3] == card["S3Path"] and bs[4:] == (36, "DESCENDING")
    assert old[0].endswith("_N0212_R045_T54PXA_20200808T040000") and old[1:3] == ("Superseded", True)
    assert new[1:3] == ("ingested", False) and "/L2A_N0500/2020/08/11/" in new[3]
    assert [s[0] for s in stages] == [bs[0], new[0]]    # the superseded one has no stages


def test_a_modified_record_is_refreshed_not_duplicated(db_url, db_schema):
    rec = derived_l2a(1)
    with ODataServer(pool=[rec]) as srv:
        cfg = cfg_for(db_schema, srv.url)
        set_aoi(db_url, cfg, AOI_54PXA)
        r1 = catalogue.harvest(db_url, cfg, dt.datetime(2020, 8, 1), dt.datetime(2020, 8, 31), cards=["s2"])
        r2 = catalogue.harvest(db_url, cfg, dt.datetime(2020, 8, 1), dt.datetime(2020, 8, 31), cards=["s2"])
        for a in rec["Attributes"]:
            if a["Name"] == "cloudCover":
                a["Value"] = 12.5
        rec["ModificationDate"] = "2025-10-10T17:56:18.034265Z"
        r3 = catalogue.harvest(db_url, cfg, dt.datetime(2020, 8, 1), dt.datetime(2020, 8, 31), cards=["s2"])
    assert (r1.inserted, r2.existing, r2.refreshed, r3.refreshed, r3.inserted) == (1, 1, 0, 1, 0)
    assert _count(db_url, db_schema, "cloud_cover = 12.5 AND modified_at = '2025-10-10 17:56:18.034265'") == 1


def test_offline_source_reads_saved_odata_pages(tmp_path):
    for i, page in enumerate(recorded_pages(shared(*ODATA)), 1):
        (tmp_path / f"page_{i}.json").write_text(json.dumps(page))
    card = shared(*ODATA, "derived_creodias_odata_CARD-BS_query_response.json")
    (tmp_path / "card.json").write_text(card.read_text())
    pages = [parsers.parse_file(p) for p in sorted(tmp_path.glob("*.json"))]
    rep = records.HarvestReport()
    recs = [records._normalise_counted(r, "t", rep) for pg in pages for r in pg.records]
    assert (rep.read, rep.not_card, rep.bad_records) == (48, 47, 0)
    (bs,) = [r for r in recs if r]
    assert (bs.card, bs.relative_orbit, bs.orbit_direction, bs.epsg) == ("bs", 36, "DESCENDING", 32636)


def test_an_extracted_product_that_was_republished_is_never_the_canonical_one(db_url, db_schema):
    """A datatake of tile 54PXA extracted from its original product (N0212); the N0500
    reprocessing arrives later, with fewer valid pixels on the parcel (SYNTHETIC rows): the
    original keeps its rows and status but is superseded, and the canonical observation is the
    reprocessed one as soon as it has rows (before that the original stays the only one)."""
    from cbm_ops.db import q, transaction
    from cbm_ops.db.partitions import ensure_partition

    cfg = cfg_for(db_schema, "http://unused")
    set_aoi(db_url, cfg, AOI_54PXA)
    t = dt.datetime(2020, 8, 11, 1, 3, 11)
    old = f"S2A_MSIL2A_{t:%Y%m%dT%H%M%S}_N0212_R045_T54PXA_20200811T040000"
    new = f"S2A_MSIL2A_{t:%Y%m%dT%H%M%S}_N0500_R045_T54PXA_20230413T212505"
    ids = {}
    with psycopg.connect(db_url) as c:
        for ref, base, status in ((old, "02.12", "extracted"), (new, "05.00", "ingested")):
            ids[ref] = c.execute(
                f'INSERT INTO "{db_schema}".dias_catalogue (obstime, reference, sensor, card, tile, epsg, '
                "processing_baseline, status) VALUES (%s, %s, '2A', 's2', '54PXA', 32654, %s, %s) RETURNING id",
                (t, ref, base, status)).fetchone()[0]
        c.execute(f"INSERT INTO \"{db_schema}\".scene_stages (obsid, stage, status) VALUES (%s, 'scl', 'extracted')",
                  (ids[old],))
    for obsid in ids.values():
        ensure_partition(db_url, cfg, obsid)
    with psycopg.connect(db_url) as c:
        c.execute(f'INSERT INTO "{db_schema}".hists VALUES (1, %s, %s)', (ids[old], json.dumps({"4": 12})))
    with transaction(db_url) as conn:
        assert conn.execute(q("catalogue_supersede", schema=db_schema)).rowcount == 1
    with psycopg.connect(db_url) as c:
        rows = {r[0]: r[1:] for r in c.execute(
            f'SELECT reference, status, superseded_by FROM "{db_schema}".dias_catalogue')}
        only = c.execute(f'SELECT obsid FROM "{db_schema}".parcel_observations WHERE pid = 1').fetchall()
        c.execute(f'INSERT INTO "{db_schema}".hists VALUES (1, %s, %s)', (ids[new], json.dumps({"4": 9})))
        canon = c.execute(f'SELECT obsid, duplicates FROM "{db_schema}".parcel_observations WHERE pid = 1').fetchall()
    assert rows[old] == ("extracted", ids[new]) and rows[new] == ("ingested", None)
    assert only == [(ids[old],)]
    assert canon == [(ids[new], 2)]              # fewer SCL pixels, but the original was superseded
