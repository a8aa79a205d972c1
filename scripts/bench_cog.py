"""`make bench BENCH_ARGS=--only-cog`: one Sentinel-2 granule from COG and from JP2, and S3
read throughput through moto.

One SYNTHETIC granule the size of T31UDS (field-like uint16 reflectance DN with noise, a
no-data wedge, an SCL layer): its 10 m bands (B02 B03 B04 B08, one file read four times, as
bench.py does), 20 m bands (B05 B11) and SCL written as lossless JPEG2000 (1024 x 1024
tiles, as ESA's) and as cloud-optimised GeoTIFF (DEFLATE, 1024 x 1024 tiles, overviews: the
Earth Search profile; their predictor setting is not documented, horizontal differencing is
used here). Measured in one run on the same pixels:

* each format's own decode (local file, rasterio, ``GDAL_NUM_THREADS`` as bench.py);
* the granule as the extraction reads it: JP2 from the mount, COG through a local HTTP range
  server (``/vsicurl/``, the STAC COG path) and through moto S3 (``/vsis3/``), each as a
  ratio to its own decode; the decoded arrays are compared (same pixels);
* S3 throughput through moto: boto3 download with the store's transfer settings (one
  connection, 64 MB parts) and GDAL ``/vsis3/`` range reads, MB/s.

moto and the range server run on this machine: the figures measure the client side
(request handling, decoding), not a network. Prints one JSON line per figure.

    python scripts/bench_cog.py [--size 10980] [--regen]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "extract"))
os.environ.setdefault("GDAL_NUM_THREADS", "ALL_CPUS")

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from affine import Affine  # noqa: E402

DATA = ROOT / "bench-output" / "data" / "cog"
BANDS = {"B02": "B10", "B03": "B10", "B04": "B10", "B08": "B10", "B05": "B20", "B11": "B20", "SCL": "SCL"}


def _emit_default(metric: str, value, unit: str, **extra) -> None:
    print(json.dumps({"metric": metric, "value": value, "unit": unit, **extra}), flush=True)


def make_granule(size: int, regen: bool = False) -> dict[str, dict[str, Path]]:
    """The granule's files per format: ``{"jp2": {file: path}, "cog": {...}}`` (cached)."""
    DATA.mkdir(parents=True, exist_ok=True)
    stamp = DATA / f"granule-{size}"
    files = {fmt: {f: DATA / f"{f}.{ext}" for f in ("B10", "B20", "SCL")} for fmt, ext in
             (("jp2", "jp2"), ("cog", "tif"))}
    if stamp.exists() and not regen:
        return files
    rng = np.random.default_rng(16)
    n = size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    fields = (np.sin(xx / 37.0) * np.cos(yy / 53.0) * 1500 + 2500).astype(np.float32)
    fields += rng.normal(0, 150, (n, n)).astype(np.float32)
    b10 = np.clip(fields, 1, 20000).astype(np.uint16)
    b10[xx < (n * 0.12) * (1 - yy / n)] = 0                   # no-data wedge at the swath edge
    del fields, yy, xx
    b20 = b10[::2, ::2].copy()
    scl = rng.choice(np.array([4, 5, 8, 9, 3, 6], np.uint8), b20.shape, p=[0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    scl[b20 == 0] = 0
    arrays = {"B10": (b10, 10), "B20": (b20, 20), "SCL": (scl, 20)}
    for f, (arr, res) in arrays.items():
        prof = dict(width=arr.shape[1], height=arr.shape[0], count=1, dtype=arr.dtype.name, crs="EPSG:32631",
                    transform=Affine(res, 0, 499980.0, 0, -res, 5700000.0), nodata=0)
        with rasterio.open(files["jp2"][f], "w", driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES",
                           YCBCR420="NO", BLOCKXSIZE=1024, BLOCKYSIZE=1024, RESOLUTIONS=6, **prof) as ds:
            ds.write(arr, 1)
        with rasterio.open(files["cog"][f], "w", driver="COG", compress="DEFLATE", predictor=2, blocksize=1024,
                           overview_resampling="nearest", **prof) as ds:
            ds.write(arr, 1)
    stamp.write_text("ok")
    return files


def _read(path: str, env: dict[str, str] | None = None, session=None) -> np.ndarray:
    with rasterio.Env(session=session, **(env or {})) if (env or session) else rasterio.Env():
        with rasterio.open(path) as ds:
            return ds.read(1)


def _granule(paths: dict[str, str], env: dict[str, str] | None = None, session=None) -> tuple[float, dict]:
    """Read the 7 bands of the granule; (seconds, arrays by file)."""
    t0 = time.perf_counter()
    out = {}
    for f in BANDS.values():
        out[f] = _read(paths[f], env, session)
    return time.perf_counter() - t0, out


def run(emit=_emit_default, size: int = 10980, regen: bool = False) -> dict:
    """Measure and emit the figures; returns them as a dict."""
    from range_server import RangeServer

    from cbm_ops.extract.store import REMOTE_GDAL

    files = make_granule(size, regen)
    sizes_mb = {fmt: round(sum(p.stat().st_size for p in fs.values()) / 2**20, 1) for fmt, fs in files.items()}
    emit("cog_bench_granule", size, "pixels (10 m side)", files_mb=sizes_mb, bands=list(BANDS),
         note="SYNTHETIC granule; 4 x 10 m + 2 x 20 m + SCL read per format")
    res: dict = {}
    for fmt in ("jp2", "cog"):
        t, arrays = _granule({f: str(p) for f, p in files[fmt].items()})
        res[f"{fmt}_decode_s"] = t
        res[f"{fmt}_arrays"] = arrays
        emit(f"granule_decode_{fmt}", round(t, 2), "s", note="local file, its own decode")
    same = all(np.array_equal(res["jp2_arrays"][f], res["cog_arrays"][f]) for f in ("B10", "B20", "SCL"))
    emit("granule_cog_equals_jp2", same, "bool", note="decoded pixels of every band")
    remote_env = {**REMOTE_GDAL, "GDAL_NUM_THREADS": os.environ.get("GDAL_NUM_THREADS", "ALL_CPUS")}
    with RangeServer(DATA) as srv:
        paths = {f: f"/vsicurl/{srv.url}/{p.name}" for f, p in files["cog"].items()}
        t, arrays = _granule(paths, remote_env)
        ok = all(np.array_equal(arrays[f], res["cog_arrays"][f]) for f in arrays)
        emit("granule_cog_http_range", round(t, 2), "s", ratio_to_own_decode=round(t / res["cog_decode_s"], 2),
             same_pixels=ok, requests=len(srv.requests),
             range_requests=sum(1 for r in srv.requests if r[2].startswith("bytes=")),
             note="local range server (starlette), /vsicurl/, the STAC COG path")
    res.update(_s3(emit, files, res))
    emit("granule_jp2_mount", round(res["jp2_decode_s"], 2), "s", ratio_to_own_decode=1.0,
         note="the mount path is the local decode itself")
    return {k: v for k, v in res.items() if not k.endswith("_arrays")}


def _s3(emit, files: dict[str, dict[str, Path]], res: dict) -> dict:
    """S3 through moto: boto3 download (store transfer settings) and /vsis3/ range reads."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)      # moto's request log

    from cbm_ops.config import StoreConfig
    from cbm_ops.extract.store import S3Store

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    out: dict = {}
    try:
        endpoint = f"http://127.0.0.1:{server._server.server_port}"
        creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench",  # nosec B105 - moto's local fake
                 "region_name": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=endpoint, **creds)
        s3.create_bucket(Bucket="eodata")
        for fmt, fs in files.items():
            for p in fs.values():
                s3.upload_file(str(p), "eodata", f"{fmt}/{p.name}")
        store = S3Store("eodata", endpoint_url=endpoint, credentials=creds,
                        cfg=StoreConfig(kind="s3", range_reads="always"))
        dst = DATA / "download"
        dst.mkdir(exist_ok=True)
        total = 0
        t0 = time.perf_counter()
        for fmt, fs in files.items():
            for p in fs.values():
                store.client.download_file("eodata", f"{fmt}/{p.name}", str(dst / p.name), Config=store.transfer)
                total += p.stat().st_size
        t = time.perf_counter() - t0
        emit("s3_moto_boto3_download", round(total / 2**20 / t, 1), "MB/s", seconds=round(t, 2),
             mb=round(total / 2**20, 1), note="store transfer settings: 1 connection, 64 MB parts")
        opts, session = store.settings.gdal()
        opts = {**opts, "GDAL_NUM_THREADS": os.environ.get("GDAL_NUM_THREADS", "ALL_CPUS")}
        for fmt in ("cog", "jp2"):
            paths = {f: f"/vsis3/eodata/{fmt}/{p.name}" for f, p in files[fmt].items()}
            t, arrays = _granule(paths, opts, session)
            ok = all(np.array_equal(arrays[f], res[f"{fmt}_arrays"][f]) for f in arrays)
            mb = sum(p.stat().st_size for p in files[fmt].values()) / 2**20
            emit(f"granule_{fmt}_s3_vsis3", round(t, 2), "s", ratio_to_own_decode=round(t / res[f"{fmt}_decode_s"], 2),
                 same_pixels=ok, distinct_mb_per_s=round(mb / t, 1),
                 note="moto on this machine; 7 band reads of 3 distinct files (GDAL caches blocks per file)")
            out[f"{fmt}_s3_s"] = t
        for p in dst.iterdir():
            p.unlink()
    finally:
        server.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980, help="granule side in 10 m pixels (T31UDS: 10980)")
    ap.add_argument("--regen", action="store_true")
    args = ap.parse_args()
    run(size=args.size, regen=args.regen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
