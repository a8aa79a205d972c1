"""Extraction: scenes end to end (S2 with BOA offset, S1 CARD-BS off-lattice and CARD-COH6),
named statuses, crashes during the write, statement errors, S3, parcel-set replacements."""

from __future__ import annotations

import datetime as dt
import shutil
import time

import numpy as np
import psycopg
import pytest
import rasterio
import shapely
from conftest import shared
from rasterio.features import geometry_mask
from synthetic import (
    FLANDERS_GPKG,
    X0,
    Y0,
    harvest_all,
    make_aoi,
    resto_feature,
    synthetic_s2_bands,
    write_card_bs,
    write_card_coh6,
    write_catalogue,
    write_s2_safe,
)

from cbm_ops import queue
from cbm_ops.db import transaction
from cbm_ops.extract import run_queue, zonal_stats
from cbm_ops.grid.stored import rasterize_aoi
from cbm_ops.parcels import import_parcels


# ----------------------------------------------------------------- scenes end to end
def db_geoms(url, schema, epsg=32631):
    with psycopg.connect(url) as c:
        rows = c.execute(f'SELECT ogc_fid, ST_AsBinary(ST_Transform(wkb_geometry, {epsg})) '
                         f'FROM "{schema}".parcels ORDER BY 1').fetchall()
    return [r[0] for r in rows], [shapely.from_wkb(bytes(r[1])) for r in rows]


def sigs_of(url, schema, obsid, band):
    with psycopg.connect(url) as c:
        rows = c.execute(f'SELECT pid, count, mean, std, min, max, p25, p50, p75 FROM "{schema}".sigs '
                         'WHERE obsid = %s AND band = %s ORDER BY pid', (obsid, band)).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_s2_scene_end_to_end_with_boa_offset_and_rerun(db_url, db_schema, tmp_path):
    cfg, eodata = make_aoi(db_schema, tmp_path)
    t = dt.datetime(2023, 6, 1, 10, 56, 21)
    bands = synthetic_s2_bands()
    name = write_s2_safe(eodata, t, X0, Y0, bands, baseline="05.10", offset=-1000)
    write_catalogue(tmp_path / "catalogue" / "s2.json", [resto_feature(
        name + ".SAFE", t, "L2A", f"/eodata/Sentinel-2/MSI/L2A/2023/06/01/{name}.SAFE", (2.9, 50.4, 4.5, 51.4))])
    import_parcels(db_url, cfg)
    assert harvest_all(db_url, cfg).inserted == 1
    built = rasterize_aoi(db_url, cfg)
    assert {(b["epsg"], b["resolution"], b["action"]) for b in built} == {(32631, 10.0, "built"),
                                                                        (32631, 20.0, "built")}
    assert {b["action"] for b in rasterize_aoi(db_url, cfg)} == {"current"}
    out = {s: run_queue(db_url, cfg, s) for s in cfg.stages}
    assert [out[s]["by_status"] for s in cfg.stages] == [{"extracted": 1}] * 3
    pids, geoms = db_geoms(db_url, db_schema)
    with psycopg.connect(db_url) as c:
        obsid, status, offs = c.execute(f'SELECT id, status, boa_add_offset FROM "{db_schema}".dias_catalogue'
                                        ).fetchone()
    assert status == "extracted" and offs == {b: -1000 for b in ("B02", "B03", "B04", "B08", "B05", "B11")}
    safe = next(eodata.rglob("*.SAFE"))
    for band in ("B04", "B08", "B11"):
        res = 20 if band == "B11" else 10
        jp2 = next(safe.rglob(f"*_{band}_{res}m.jp2"))
        expect = zonal_stats(str(jp2), geoms, nodata=0)
        got = sigs_of(db_url, db_schema, obsid, band)
        with_data = [p for p, e in zip(pids, expect, strict=True) if e["count"]]
        assert sorted(got) == with_data and 0 < len(with_data) < len(pids)   # other patches: no rows
        for p, e in zip(pids, expect, strict=True):
            if not e["count"]:
                continue
            row = got[p]
            assert row[0] == e["count"] and row[2] == pytest.approx(e["std"], rel=1e-6)
            for k, v in zip(("mean", "min", "max", "p25", "p50", "p75"), row[1:2] + row[3:], strict=True):
                assert v == pytest.approx(e[k] - 1000, rel=1e-6), (band, p, k)   # BOA_ADD_OFFSET applied
    # SCL histograms equal numpy counts over the parcel masks (nodata 0 left out)
    with psycopg.connect(db_url) as c:
        hists = dict(c.execute(f'SELECT pid, hist FROM "{db_schema}".hists WHERE obsid = %s', (obsid,)))
    scl = bands["SCL"]
    t20 = rasterio.Affine(20, 0, X0, 0, -20, Y0)
    for p, g in zip(pids, geoms, strict=True):
        m = ~geometry_mask([g], out_shape=scl.shape, transform=t20)
        v = scl[m & (scl != 0)]
        expect = {str(k): int(n) for k, n in enumerate(np.bincount(v, minlength=12)) if n}
        assert hists.get(p, {}) == expect
    # Re-running every stage replaces the rows: same counts, no duplicates.
    def counts():
        with psycopg.connect(db_url) as c:
            return [c.execute(f'SELECT count(*) FROM "{db_schema}".{t}').fetchone()[0] for t in ("sigs", "hists")]
    before = counts()
    assert queue.requeue(db_url, cfg, [obsid]) == 3
    for s in cfg.stages:
        assert run_queue(db_url, cfg, s)["by_status"] == {"extracted": 1}
    assert counts() == before and before[0] > 0


def test_scl_without_parcels_skips_band_stages(db_url, db_schema, tmp_path):
    cfg, eodata = make_aoi(db_schema, tmp_path)
    t = dt.datetime(2023, 6, 3, 10, 56, 21)
    # A product far from every parcel (same lattice, 100 km east).
    name = write_s2_safe(eodata, t, X0 + 100_000, Y0, synthetic_s2_bands())
    write_catalogue(tmp_path / "catalogue" / "s2.json", [resto_feature(
        name + ".SAFE", t, "L2A", f"/eodata/Sentinel-2/MSI/L2A/2023/06/03/{name}.SAFE", (2.9, 50.4, 4.5, 51.4))])
    import_parcels(db_url, cfg)
    harvest_all(db_url, cfg)
    rasterize_aoi(db_url, cfg)
    assert run_queue(db_url, cfg, "scl")["by_status"] == {"No parcels": 1}
    assert run_queue(db_url, cfg, "s2_10m")["scenes"] == 0
    with psycopg.connect(db_url) as c:
        assert dict(c.execute(f'SELECT stage, status FROM "{db_schema}".scene_stages')) == {
            "scl": "No parcels", "s2_10m": "No parcels", "s2_20m": "No parcels"}
        assert c.execute(f'SELECT status FROM "{db_schema}".dias_catalogue').fetchone()[0] == "No parcels"


@pytest.mark.parametrize("dx", [23.7, 23.7004])      # SNAP "Auto UTM" origins are any float
def test_s1_card_bs_off_lattice_and_coh6(db_url, db_schema, tmp_path, dx):
    cfg, eodata = make_aoi(db_schema, tmp_path, cards=("bs", "c6"))
    rng = np.random.default_rng(11)
    t = dt.datetime(2023, 6, 2, 17, 32, 45)
    # CARD-BS on an "Auto UTM" grid whose origin is not on the 10 m lattice.
    vv = rng.gamma(2.0, 0.04, (70, 70)).astype(np.float32)
    vh = rng.gamma(2.0, 0.01, (70, 70)).astype(np.float32)
    vv[:, :6] = 0.0                                           # CARD nodata
    vh[3, 3] = np.nan
    bs = write_card_bs(eodata, t, X0 - dx, Y0 + 31.2, 10.0, {"VV": vv, "VH": vh})
    c6 = write_card_coh6(eodata, t, X0, Y0, 20.0, rng.random((32, 32)), rng.random((32, 32)))
    write_catalogue(tmp_path / "catalogue" / "s1.json", [
        resto_feature(bs, t, "CARD-BS", f"/eodata/Sentinel-1/SAR/CARD-BS/2023/06/02/{bs}", (2.9, 50.4, 4.5, 51.4)),
        resto_feature(c6, t, "CARD-COH6", f"/eodata/Sentinel-1/SAR/CARD-COH6/2023/06/02/{c6}",
                      (2.9, 50.4, 4.5, 51.4))])
    import_parcels(db_url, cfg)
    assert harvest_all(db_url, cfg).inserted == 2
    assert run_queue(db_url, cfg, "bs")["by_status"] == {"extracted": 1}
    assert run_queue(db_url, cfg, "c6")["by_status"] == {"extracted": 1}
    pids, geoms = db_geoms(db_url, db_schema)
    with psycopg.connect(db_url) as c:
        ids = dict(c.execute(f'SELECT card, id FROM "{db_schema}".dias_catalogue'))
    img = next(eodata.rglob("Gamma0_VH.img"))
    tif = next(eodata.rglob("*CARD_COH6.tif"))
    for band, path, idx, obsid in (("VVb", img.with_name("Gamma0_VV.img"), 1, ids["bs"]),
                                   ("VHb", img, 1, ids["bs"]), ("VVc", tif, 1, ids["c6"]),
                                   ("VHc", tif, 2, ids["c6"])):
        expect = zonal_stats(str(path), geoms, band=idx, nodata=0.0)
        got = sigs_of(db_url, db_schema, obsid, band)
        assert len(got) == sum(1 for e in expect if e["count"]) > 0
        for p, e in zip(pids, expect, strict=True):
            if e["count"]:
                assert got[p][0] == e["count"]
                assert got[p][1] == pytest.approx(e["mean"], rel=1e-6)
                assert got[p][6] == pytest.approx(e["p50"], rel=1e-6)


def test_missing_band_and_corrupt_file_get_named_statuses(db_url, db_schema, tmp_path):
    cfg, eodata = make_aoi(db_schema, tmp_path, max_attempts=2)
    feats = []
    for day in (5, 6, 7):
        t = dt.datetime(2023, 6, day, 10, 56, 21)
        name = write_s2_safe(eodata, t, X0, Y0, synthetic_s2_bands(day))
        feats.append(resto_feature(name + ".SAFE", t, "L2A",
                                   f"/eodata/Sentinel-2/MSI/L2A/2023/06/{day:02d}/{name}.SAFE", (2.9, 50.4, 4.5, 51.4)))
    write_catalogue(tmp_path / "catalogue" / "s2.json", feats)
    safes = sorted(eodata.rglob("*.SAFE"))
    next(safes[0].rglob("*_SCL_20m.jp2")).unlink()                       # product incomplete
    next(safes[1].rglob("*_SCL_20m.jp2")).write_bytes(b"\x00\x00\x00\x0cjP  garbage")   # corrupt
    import_parcels(db_url, cfg)
    harvest_all(db_url, cfg)
    rasterize_aoi(db_url, cfg)
    out = run_queue(db_url, cfg, "scl")
    assert out["by_status"] == {"No file": 1, "Read error": 1, "extracted": 1}
    with psycopg.connect(db_url) as c:
        st = dict(c.execute(f'SELECT status, count(*) FROM "{db_schema}".dias_catalogue GROUP BY 1'))
    assert st == {"No file": 1, "Read error": 1, "ingested": 1}      # third waits for its band stages
    # The missing file arrives; cleanup requeues the retryable failures.
    shutil.copy(next(safes[2].rglob("*_SCL_20m.jp2")),
                next(safes[0].rglob("R20m")) / next(safes[2].rglob("*_SCL_20m.jp2")).name)
    assert sum(len(v) for v in queue.cleanup(db_url, cfg).requeued.values()) == 2
    out = run_queue(db_url, cfg, "scl")
    assert out["by_status"] == {"extracted": 1, "Read error": 1}
    # Attempts exhausted: the corrupt scene keeps its named status.
    assert queue.cleanup(db_url, cfg).requeued == {}
    assert run_queue(db_url, cfg, "scl")["scenes"] == 0


def one_s2_scene_harvested(db_url, cfg, eodata, tmp_path) -> None:
    """A SYNTHETIC S2 scene of 2023-06-01 in the store and the catalogue, parcels imported."""
    t = dt.datetime(2023, 6, 1, 10, 56, 21)
    name = write_s2_safe(eodata, t, X0, Y0, synthetic_s2_bands())
    write_catalogue(tmp_path / "catalogue" / "s2.json", [resto_feature(
        name + ".SAFE", t, "L2A", f"/eodata/Sentinel-2/MSI/L2A/2023/06/01/{name}.SAFE", (2.9, 50.4, 4.5, 51.4))])
    import_parcels(db_url, cfg)
    harvest_all(db_url, cfg)


def test_crash_during_write_keeps_the_old_complete_result(db_url, db_schema, tmp_path):
    cfg, eodata = make_aoi(db_schema, tmp_path)
    one_s2_scene_harvested(db_url, cfg, eodata, tmp_path)
    for s in ("scl", "s2_10m"):
        run_queue(db_url, cfg, s)
    with psycopg.connect(db_url) as c:
        before = c.execute(f'SELECT pid, band, mean FROM "{db_schema}".sigs ORDER BY 1, 2').fetchall()
        obsid = c.execute(f'SELECT id FROM "{db_schema}".dias_catalogue').fetchone()[0]
        # The server fails in the middle of the COPY (after some rows went in).
        c.execute(f"""CREATE FUNCTION "{db_schema}".boom() RETURNS trigger LANGUAGE plpgsql AS $$
                      BEGIN IF NEW.band = 'B08' THEN RAISE EXCEPTION 'disk full'; END IF; RETURN NEW; END $$""")
        c.execute(f'CREATE TRIGGER boom BEFORE INSERT ON "{db_schema}".sigs FOR EACH ROW '
                  f'EXECUTE FUNCTION "{db_schema}".boom()')
    queue.requeue(db_url, cfg, [obsid], ["s2_10m"])
    out = run_queue(db_url, cfg, "s2_10m")
    assert out["by_status"] == {"Failed": 1} and "disk full" in out["results"][0]["error"]
    with psycopg.connect(db_url) as c:
        after = c.execute(f'SELECT pid, band, mean FROM "{db_schema}".sigs ORDER BY 1, 2').fetchall()
    assert after == before and len(before) > 0


@pytest.mark.parametrize("errcode", ["query_canceled", "deadlock_detected"])
def test_a_statement_error_on_a_live_connection_fails_the_scene_once(db_url, db_schema, tmp_path, errcode):
    """statement_timeout, a deadlock: operational errors of a healthy connection are the
    scene's failure (attempt counted, named status), not an outage retried for ever."""
    cfg, eodata = make_aoi(db_schema, tmp_path, db_retry_minutes=0.05)
    one_s2_scene_harvested(db_url, cfg, eodata, tmp_path)
    with psycopg.connect(db_url) as c:
        c.execute(f"""CREATE FUNCTION "{db_schema}".boom() RETURNS trigger LANGUAGE plpgsql AS $$
                      BEGIN RAISE EXCEPTION 'SYNTHETIC {errcode}' USING ERRCODE = '{errcode}'; END $$""")
        c.execute(f'CREATE TRIGGER boom BEFORE INSERT ON "{db_schema}".hists FOR EACH ROW '
                  f'EXECUTE FUNCTION "{db_schema}".boom()')
    t0 = time.monotonic()
    out = run_queue(db_url, cfg, "scl")
    assert out["by_status"] == {"Failed": 1} and f"SYNTHETIC {errcode}" in out["results"][0]["error"]
    assert time.monotonic() - t0 < 60
    with psycopg.connect(db_url) as c:
        assert c.execute(f'SELECT status, attempts FROM "{db_schema}".scene_stages WHERE stage = %s',
                         ("scl",)).fetchall() == [("Failed", 1)]


def test_s3_store_gives_the_same_rows_and_cleans_its_cache(db_url, db_schema, tmp_path, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    from cbm_ops.extract.store import S3Store

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{server._server.server_port}"
        creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
        cfg, eodata = make_aoi(db_schema, tmp_path)
        t = dt.datetime(2023, 6, 1, 10, 56, 21)
        name = write_s2_safe(eodata, t, X0, Y0, synthetic_s2_bands())
        write_catalogue(tmp_path / "catalogue" / "s2.json", [resto_feature(
            name + ".SAFE", t, "L2A", f"/eodata/Sentinel-2/MSI/L2A/2023/06/01/{name}.SAFE", (2.9, 50.4, 4.5, 51.4))])
        s3 = boto3.client("s3", endpoint_url=endpoint, **creds)
        s3.create_bucket(Bucket="eodata")
        for f in eodata.rglob("*"):
            if f.is_file():
                s3.upload_file(str(f), "eodata", str(f.relative_to(eodata)))
        cache = tmp_path / "cache"
        store = S3Store("eodata", endpoint_url=endpoint, cache_dir=str(cache), credentials=creds)
        import_parcels(db_url, cfg)
        harvest_all(db_url, cfg)
        for s in cfg.stages:
            assert run_queue(db_url, cfg, s, store=store)["by_status"] == {"extracted": 1}
        assert list(cache.iterdir()) == []                      # per-scene cache removed
        with psycopg.connect(db_url) as c:
            s3_rows = c.execute(f'SELECT pid, band, count, mean, p50 FROM "{db_schema}".sigs ORDER BY 1, 2').fetchall()
            obsid = c.execute(f'SELECT id FROM "{db_schema}".dias_catalogue').fetchone()[0]
        queue.requeue(db_url, cfg, [obsid])
        for s in cfg.stages:
            run_queue(db_url, cfg, s)                           # mounted store this time
        with psycopg.connect(db_url) as c:
            mount_rows = c.execute(f'SELECT pid, band, count, mean, p50 FROM "{db_schema}".sigs ORDER BY 1, 2'
                                   ).fetchall()
        assert s3_rows == mount_rows and len(s3_rows) > 0
        # A missing object: named status, and the cache is removed on failure too.
        s3.delete_object(Bucket="eodata", Key=str(next(eodata.rglob("*_B04_10m.jp2")).relative_to(eodata)))
        queue.requeue(db_url, cfg, [obsid], ["s2_10m"])
        assert run_queue(db_url, cfg, "s2_10m", store=store)["by_status"] == {"No file": 1}
        assert list(cache.iterdir()) == []
    finally:
        server.stop()


def test_stored_index_is_invalidated_by_a_new_parcel_set(db_url, db_schema, tmp_path):
    cfg, eodata = make_aoi(db_schema, tmp_path)
    import_parcels(db_url, cfg)
    with transaction(db_url) as conn:
        conn.execute(f"""INSERT INTO "{db_schema}".dias_catalogue (obstime, reference, sensor, card, epsg)
                         VALUES ('2023-06-01', 'x', '2A', 's2', 32631)""")
        conn.execute(f"""INSERT INTO "{db_schema}".scene_stages (obsid, stage)
                         SELECT id, 'scl' FROM "{db_schema}".dias_catalogue""")
    assert {b["action"] for b in rasterize_aoi(db_url, cfg)} == {"built"}
    import_parcels(db_url, cfg, shared("parcels-lpis", "flanders-geofileops", "polygon-parcel.gpkg"),
                   layer="parcels", replace=True)
    rebuilt = rasterize_aoi(db_url, cfg)
    assert {b["action"] for b in rebuilt} == {"built"} and rebuilt[0]["parcels"] == 47


def test_a_parcel_set_replaced_while_a_scene_is_extracted_is_extracted_again(db_url, db_schema, tmp_path,
                                                                              monkeypatch):
    """--replace removes 3 parcels after a worker read a stage's bands, before its write:
    nothing is written on the old parcels (no rows of removed parcels), the scene goes back
    to the queue uncounted and is extracted on the new set."""
    from osgeo import gdal

    from cbm_ops.extract import stage

    cfg, eodata = make_aoi(db_schema, tmp_path)
    one_s2_scene_harvested(db_url, cfg, eodata, tmp_path)
    rasterize_aoi(db_url, cfg)
    assert run_queue(db_url, cfg, "scl")["by_status"] == {"extracted": 1}
    with psycopg.connect(db_url) as c:
        gone = [r[0] for r in c.execute(f'SELECT pid FROM "{db_schema}".hists ORDER BY pid LIMIT 3')]
    src = gdal.OpenEx(str(shared(*FLANDERS_GPKG)))
    lyr = src.GetLayerByName("lpis_raster_polygonised")
    smaller = str(tmp_path / "smaller.gpkg")
    gdal.VectorTranslate(smaller, src, layers=["lpis_raster_polygonised"],
                         where=f"{lyr.GetFIDColumn() or 'fid'} NOT IN ({','.join(map(str, gone))})")
    del lyr, src
    new_set = cfg.model_copy(update={"parcels": cfg.parcels.model_copy(update={"source": smaller})})
    original, calls = stage.ensure_partition, []

    def replaced_first(*a, **kw):          # the operator's import lands between read and write
        if not calls:
            calls.append(import_parcels(db_url, new_set, replace=True))
        return original(*a, **kw)

    monkeypatch.setattr(stage, "ensure_partition", replaced_first)
    out = run_queue(db_url, cfg, "s2_10m")
    assert calls and calls[0].changed["removed"] == 3
    assert out["by_status"] == {"extracted": 1}
    with psycopg.connect(db_url) as c:
        orphans = c.execute(f'SELECT count(*) FROM "{db_schema}".sigs s WHERE NOT EXISTS '
                            f'(SELECT 1 FROM "{db_schema}".parcels p WHERE p.ogc_fid = s.pid)').fetchone()[0]
        attempts = c.execute(f'SELECT attempts FROM "{db_schema}".scene_stages WHERE stage = %s',
                             ("s2_10m",)).fetchone()[0]
        n = c.execute(f'SELECT count(*) FROM "{db_schema}".sigs').fetchone()[0]
    assert orphans == 0 and attempts == 1 and n > 0
