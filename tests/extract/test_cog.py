"""Scene access beyond the mount: one product read as SAFE/JP2 and as DEFLATE COGs through a
STAC item (range requests to a local HTTP server, signed hrefs), and from S3 (moto) with
GDAL ``/vsis3/`` range reads: the signatures must be equal.

The product is SYNTHETIC (synthetic DN on the real Flanders parcels, the harness's
``write_s2_safe``); the COGs are made from its JP2 files (lossless, the same DN), as Earth
Search and Planetary Computer make theirs from ESA's JP2. The STAC items have the shapes of
the REAL recorded items (Earth Search ``sentinel-2-c1-l2a``: ``raster:bands`` offset -0.1,
scale 0.0001; Planetary Computer: no ``raster:*``, the BOA offset in ``product-metadata``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest
from range_server import RangeServer
from rasterio.shutil import copy as rio_copy
from synthetic import X0, Y0, harvest_all, make_aoi, resto_feature, synthetic_s2_bands, write_catalogue, write_s2_safe

from cbm_ops.config import S2_NATIVE_RES
from cbm_ops.extract import run_queue
from cbm_ops.extract.store import make_store
from cbm_ops.grid.stored import rasterize_aoi
from cbm_ops.harvest.assets import offset_for
from cbm_ops.parcels import import_parcels

T = dt.datetime(2023, 6, 1, 10, 56, 21)
ES_KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B05": "rededge1", "B11": "swir16",
           "SCL": "scl"}


def sigs(url: str, schema: str) -> list[tuple]:
    with psycopg.connect(url) as c:
        s = c.execute(f'SELECT pid, band, count, mean, std, min, max, p25, p50, p75 FROM "{schema}".sigs '
                      'ORDER BY pid, band').fetchall()
        h = c.execute(f'SELECT pid, hist::text FROM "{schema}".hists ORDER BY pid').fetchall()
    return s + h


def jp2_scene(db_url: str, schema: str, tmp: Path):
    """The product as SAFE/JP2 on the mount, extracted: (cfg, SAFE path, product name)."""
    tmp.mkdir(parents=True, exist_ok=True)
    cfg, eodata = make_aoi(schema, tmp)
    name = write_s2_safe(eodata, T, X0, Y0, synthetic_s2_bands(), baseline="05.10", offset=-1000)
    write_catalogue(tmp / "catalogue" / "s2.json", [resto_feature(
        name + ".SAFE", T, "L2A", f"/eodata/Sentinel-2/MSI/L2A/2023/06/01/{name}.SAFE", (2.9, 50.4, 4.5, 51.4))])
    import_parcels(db_url, cfg)
    harvest_all(db_url, cfg)
    rasterize_aoi(db_url, cfg)
    for s in cfg.stages:
        assert run_queue(db_url, cfg, s)["by_status"] == {"extracted": 1}
    return cfg, next(eodata.rglob("*.SAFE")), name


def write_cogs(safe: Path, out: Path) -> dict[str, str]:
    """DEFLATE COGs of the SAFE's band files (Earth Search's profile), and its metadata."""
    out.mkdir(parents=True)
    files = {}
    for band in ES_KEYS:
        jp2 = next(safe.rglob(f"*_{band}_*m.jp2"))
        rio_copy(str(jp2), str(out / f"{band}.tif"), driver="COG", compress="DEFLATE", blocksize=512)
        files[band] = f"{band}.tif"
    (out / "MTD_MSIL2A.xml").write_bytes((safe / "MTD_MSIL2A.xml").read_bytes())
    return files


def stac_item(kind: str, name: str, base: str) -> dict:
    """A STAC item of the recorded shapes: ``es`` (Earth Search c1) or ``pc`` (Planetary Computer)."""
    assets = {}
    for band in ES_KEYS:
        key = ES_KEYS[band] if kind == "es" else band
        gsd = S2_NATIVE_RES[band]
        a = {"href": f"{base}/{band}.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
             "gsd": gsd, "roles": ["data"]}
        if kind == "es":
            rb = {"nodata": 0, "data_type": "uint16" if band != "SCL" else "uint8", "spatial_resolution": gsd}
            if band != "SCL":
                rb.update(scale=0.0001, offset=-0.1)
            a["raster:bands"] = [rb]
        assets[key] = a
    if kind == "pc":
        assets["product-metadata"] = {"href": f"{base}/MTD_MSIL2A.xml", "type": "application/xml"}
    return {"type": "Feature", "stac_version": "1.0.0", "id": f"S2B_31UDS_{T:%Y%m%d}_0_L2A",
            "collection": "sentinel-2-c1-l2a" if kind == "es" else "sentinel-2-l2a",
            "geometry": {"type": "Polygon", "coordinates": [[[2.9, 50.4], [4.5, 50.4], [4.5, 51.4], [2.9, 51.4],
                                                              [2.9, 50.4]]]},
            "properties": {"datetime": f"{T:%Y-%m-%dT%H:%M:%S}.024Z", "s2:product_uri": f"{name}.SAFE",
                           "eo:cloud_cover": 10.0, "s2:processing_baseline": "05.10", "proj:epsg": 32631},
            "assets": assets, "links": []}


@pytest.mark.parametrize("kind", ["es", "pc"])
def test_cog_through_a_stac_item_equals_the_jp2(db_url, db_schema, tmp_path, kind):
    cfg, safe, name = jp2_scene(db_url, db_schema, tmp_path / "jp2")
    expected = sigs(db_url, db_schema)
    assert len(expected) > 50
    write_cogs(safe, tmp_path / "cogs" / name)
    schema2 = db_schema + "c"
    try:
        with RangeServer(tmp_path / "cogs", require_sig=True) as srv:
            base = f"{srv.url}/{name}"
            cat = tmp_path / "stac"
            cat.mkdir()
            (cat / "item.json").write_text(json.dumps(stac_item(kind, name, base)))
            cfg2 = cfg.model_copy(update={"schema_": schema2, "catalogue": cfg.catalogue.model_copy(
                update={"path": str(cat)})})
            import_parcels(db_url, cfg2)
            assert harvest_all(db_url, cfg2).inserted == 1
            rasterize_aoi(db_url, cfg2)
            store = make_store(cfg2, signer=lambda href: href + "?st=2026-12-04&se=2026-12-05&sp=r&sig=test")
            srv.requests.clear()
            for s in cfg2.stages:
                assert run_queue(db_url, cfg2, s, store=store)["by_status"] == {"extracted": 1}
            reqs = list(srv.requests)
            with psycopg.connect(db_url) as c:
                ident, offs = c.execute(f'SELECT product_identifier, boa_add_offset FROM "{schema2}".dias_catalogue'
                                        ).fetchone()
            got = sigs(db_url, schema2)
            # without the signer the server refuses the read
            unsigned = make_store(cfg2, signer=lambda href: href)
            from cbm_ops import queue

            with psycopg.connect(db_url) as c:
                obsid = c.execute(f'SELECT id FROM "{schema2}".dias_catalogue').fetchone()[0]
            queue.requeue(db_url, cfg2, [obsid], ["s2_10m"])
            out = run_queue(db_url, cfg2, "s2_10m", store=unsigned)
    finally:
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema2}" CASCADE')
    assert ident.startswith(f"stac:{'sentinel-2-c1-l2a' if kind == 'es' else 'sentinel-2-l2a'}/S2B_31UDS_")
    assert offs == {b: -1000 for b in ("B02", "B03", "B04", "B08", "B05", "B11")}
    assert got == expected                                   # same pixels, same signatures
    assert {m for m, _, _ in reqs} <= {"HEAD", "GET"} and all("/cogs/" not in p for _, p, _ in reqs)
    assert any(r for _, _, r in reqs if r.startswith("bytes="))       # range requests, not whole files
    # unsigned: the COG read (es) or the metadata download (pc) is refused, a retryable status
    assert out["by_status"] == {"Read error" if kind == "es" else "No file": 1}
    assert "403" in out["results"][0]["error"]


def test_offset_rules_per_catalogue():
    es_c1 = {"scale": 0.0001, "offset": -0.1}
    assert offset_for("B04", es_c1, {"boa_offset_applied": None}, "05.11", None) == (-1000, "raster offset/scale")
    # Earth Search legacy sentinel-2-l2a: the COG already holds DN + offset (flag true)
    assert offset_for("B04", es_c1, {"boa_offset_applied": True}, "05.09", None)[0] == 0
    assert offset_for("B04", es_c1, {"boa_offset_applied": True}, "05.09", None, "assume_raw")[0] == -1000
    assert offset_for("B04", es_c1, {"boa_offset_applied": False}, "05.09", None)[0] == -1000
    # before baseline 04.00 no offset, whatever raster:offset says
    assert offset_for("B04", es_c1, {}, "02.12", None) == (0, "baseline < 04.00")
    # Planetary Computer: no raster fields: the metadata's BOA_ADD_OFFSET, else -1000
    assert offset_for("B04", {}, {}, "05.10", {"B04": -1000}) == (-1000, "MTD_MSIL2A.xml")
    assert offset_for("B04", {}, {}, "05.10", None) == (-1000, "baseline >= 04.00 default")
    assert offset_for("SCL", es_c1, {}, "05.10", None) == (0, "scl")
    # a raster offset that contradicts the metadata: the metadata wins (logged)
    assert offset_for("B04", es_c1, {}, "05.10", {"B04": -2000}) == (-2000, "MTD_MSIL2A.xml")


def test_s3_range_reads_through_vsis3_equal_the_mount(db_url, db_schema, tmp_path):
    """The SAFE on a moto S3 bucket, bands read in place by GDAL /vsis3/ (path-style, endpoint
    without scheme, plain HTTP), metadata downloaded: the same rows as the mount."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    cfg, safe, name = jp2_scene(db_url, db_schema, tmp_path / "jp2")
    expected = sigs(db_url, db_schema)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    schema2 = db_schema + "s"
    try:
        endpoint = f"http://127.0.0.1:{server._server.server_port}"
        creds = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=endpoint, **creds)
        s3.create_bucket(Bucket="eodata")
        root = tmp_path / "jp2" / "eodata"
        for f in root.rglob("*"):
            if f.is_file():
                s3.upload_file(str(f), "eodata", str(f.relative_to(root)))
        cfg2 = cfg.model_copy(update={"schema_": schema2, "store": cfg.store.model_copy(
            update={"kind": "s3", "range_reads": "always", "cache_dir": str(tmp_path / "cache")})})
        import_parcels(db_url, cfg2)
        harvest_all(db_url, cfg2)
        rasterize_aoi(db_url, cfg2)
        store = make_store(cfg2, s3_credentials=creds, s3_endpoint=endpoint)
        for s in cfg2.stages:
            assert run_queue(db_url, cfg2, s, store=store)["by_status"] == {"extracted": 1}
        got = sigs(db_url, schema2)
        cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    finally:
        server.stop()
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema2}" CASCADE')
    assert got == expected
    assert cached == [] and store.limiter.waited == 0.0        # per-scene cache removed; far below 2,000/min
