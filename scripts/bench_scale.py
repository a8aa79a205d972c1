"""National-scale parts of `make bench` (called by scripts/bench.py, same run, same data).

* :func:`s1_scenes`: SYNTHETIC full-size Sentinel-1 CARD-BS scenes (VV + VH, ENVI float32
  big-endian as SNAP writes it, 25,000 x 19,000 pixels at 10 m, off the Sentinel-2
  lattice) over the benchmark tile's 200k parcels, claim to commit through ``run_queue``,
  against the read time of the same band blocks; three scenes on one grid: the first
  rasterizes the parcels it intersects (footprint query), the second makes the repeating
  lattice a stored one, the third is the steady state.
* :func:`million_parcels`: a 1M-parcel AOI (SYNTHETIC, LPIS-like): index build time and
  size, and the peak RSS of the index builder and of a worker process (load the stored
  index, decode a full 10 m band window, compute its statistics).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

S1_W, S1_H, S1_RES = 25_000, 19_000, 10.0


def _hdr(path: Path, pol: str, x0: float, y0: float, width: int, height: int, epsg: int) -> None:
    from pyproj import CRS

    wkt = CRS.from_epsg(epsg).to_wkt("WKT1_ESRI")
    path.write_text(
        "ENVI\ndescription = {SYNTHETIC Sentinel-1 CARD-BS Gamma0 (cbm-airflow bench) - Unit: linear}\n"
        f"samples = {width}\nlines = {height}\nbands = 1\nheader offset = 0\nfile type = ENVI Standard\n"
        "data type = 4\ninterleave = bsq\nbyte order = 1\n"
        f"band names = {{ Gamma0_{pol} }}\n"
        f"map info = {{UTM,1,1,{x0},{y0},{S1_RES},{S1_RES},{epsg % 100},North,WGS-84,units=Meters}}\n"
        f"coordinate system string = {{{wkt}}}\n")


def make_s1_bands(data: Path, x0: float, y0: float, epsg: int, seed: int = 5) -> dict[str, Path]:
    """Two SYNTHETIC full-size CARD-BS bands (written once, cached in ``data``)."""
    out = {}
    rng = np.random.default_rng(seed)
    edge = int(S1_W * 0.06)                          # the swath's no-data edges, as CARD-BS has them
    for pol, scale in (("VV", 0.08), ("VH", 0.02)):
        img = data / f"s1_Gamma0_{pol}.img"
        out[pol] = img
        _hdr(img.with_suffix(".hdr"), pol, x0, y0, S1_W, S1_H, epsg)
        if img.exists() and img.stat().st_size == S1_W * S1_H * 4:
            continue
        with open(img, "wb") as f:
            for r in range(0, S1_H, 1000):
                block = rng.random((min(1000, S1_H - r), S1_W), dtype=np.float32) * np.float32(2 * scale)
                block[:, :edge] = 0
                block[:, -edge:] = 0
                block.astype(">f4").tofile(f)
    return out


def s1_scenes(url: str, cfg, data: Path, tile_x0: float, tile_y0: float, epsg: int, t0) -> list[dict[str, Any]]:
    """Three full-size CARD-BS scenes on one off-lattice grid, claim to commit vs reading.

    Returns
    -------
    list of dict
        Per scene: seconds (claim to commit), cpu_s (process CPU of it), reads_s (the blocks
        of the two bands the scene needs, read again right after), read_full_s (both full bands),
        ratio, rows, index source, and run_queue's own read/stats/write split.
    """
    import datetime as dt

    import rasterio
    import shapely
    from psycopg import sql
    from pyproj import Transformer

    from cbm_ops.db import transaction
    from cbm_ops.extract import run_queue
    from cbm_ops.harvest import HarvestReport, SceneRecord, upsert
    from cbm_ops.queue import enqueue

    x0 = tile_x0 - 70_000 + 3.7                       # "Auto UTM": off the 10 m lattice of S2
    y0 = tile_y0 + 40_000 - 2.1
    bands = make_s1_bands(data, x0, y0, epsg)
    tr = Transformer.from_crs(epsg, 4326, always_xy=True)
    e = S1_W * S1_RES * 0.06
    fp = shapely.box(x0 + e, y0 - S1_H * S1_RES, x0 + S1_W * S1_RES - e, y0)
    fp = shapely.transform(shapely.segmentize(fp, 5000), lambda xy: np.column_stack(tr.transform(*xy.T)))
    results = []
    for k in range(3):
        t = t0 + dt.timedelta(days=k * 12, hours=7)
        ref = (f"S1A_IW_GRDH_1SDV_{t:%Y%m%dT%H%M%S}_{t + dt.timedelta(seconds=25):%Y%m%dT%H%M%S}_"
               f"0{47000 + k:05d}_05A1B{k}_BE{k:02d}_CARD_BS")
        rel = f"Sentinel-1/SAR/CARD-BS/{t:%Y/%m/%d}/{ref}"
        d = data / "eodata" / rel / f"{ref}.data"
        d.mkdir(parents=True, exist_ok=True)
        for pol, img in bands.items():
            for suffix in (".img", ".hdr"):
                link = d / f"Gamma0_{pol}{suffix}"
                if not link.exists():
                    link.symlink_to(img.with_suffix(suffix))
        with transaction(url) as conn:
            ids = upsert(conn, cfg.schema, [SceneRecord(
                reference=ref, obstime=t, sensor="1A", card="bs", footprint_wkt=shapely.multipolygons([fp]).wkt,
                tile=None, epsg=epsg, relative_orbit=37, orbit_direction="ASCENDING", processing_baseline=None,
                cloud_cover=None, product_identifier="/eodata/" + rel, catalogue_id=None, source="bench")],
                HarvestReport())
            enqueue(conn, cfg)
        c0 = cpu_seconds()
        out = run_queue(url, cfg, "bs", obsids=ids)
        cpu = cpu_seconds() - c0
        res = out["results"][0]
        with transaction(url) as conn:
            lin = conn.execute(sql.SQL("SELECT lineage FROM {}.scene_stages WHERE obsid = %s AND stage = %s").format(
                sql.Identifier(cfg.schema)), (ids[0], "bs")).fetchone()[0]
        # the same blocks (scanlines) of the two bands, read again: what the scene had to read
        from cbm_ops.extract.bands import plan_blocks, read_blocks
        from cbm_ops.grid import Grid
        from cbm_ops.grid.stored import index_for_grid

        t_win = 0.0
        for pol in ("VV", "VH"):
            with rasterio.open(d / f"Gamma0_{pol}.img") as ds:
                grid = Grid.from_raster(epsg, ds.transform, ds.width, ds.height)
                idx = index_for_grid(url, cfg, grid, obsid=ids[0])   # the scene's own: no new sighting
                plan = plan_blocks(grid, idx, ds.block_shapes[0])
                ta = time.perf_counter()
                read_blocks(ds, 1, plan)
                t_win += time.perf_counter() - ta
        t_full = 0.0
        for pol in ("VV", "VH"):
            with rasterio.open(d / f"Gamma0_{pol}.img") as ds:
                ta = time.perf_counter()
                ds.read(1)
                t_full += time.perf_counter() - ta
        results.append({"scene": k + 1, "seconds": res["seconds"], "cpu_s": round(cpu, 2), "reads_s": round(t_win, 3),
                        "read_full_s": round(t_full, 3), "ratio": round(res["seconds"] / t_win, 3),
                        "rows": res.get("rows"), "status": res["status"], "index": lin["index_version"],
                        "split": {k2: res.get(k2) for k2 in ("read_s", "stats_s", "write_s")}})
    return results


# Peak RSS of the subprocess itself: VmHWM of /proc/self/status (ru_maxrss would include
# the RSS the parent had when it forked, on Linux).
_HWM = r"""
def hwm_gb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 2**20, 2)
"""

_WORKER = _HWM + r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from cbm_ops.grid import kernels
from cbm_ops.grid import Grid, ParcelIndex
t0 = time.perf_counter()
meta = json.loads(open(sys.argv[2] + ".json").read())
grid = Grid(**meta["grid"])
idx = ParcelIndex.from_bytes(open(sys.argv[2], "rb").read(), grid, False, "bench")
t_load = time.perf_counter() - t0
band = np.random.default_rng(1).integers(1, 5000, (10980, 10980), dtype=np.uint16)   # one decoded 10 m band
st = kernels.parcel_stats(band, 0, 0, idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1, idx.max_pixels, 0)
print(json.dumps({"load_s": round(t_load, 2), "parcels_with_data": int((st[:, 0] > 0).sum()),
                  "peak_rss_gb": hwm_gb()}))
"""


def million_parcels(data: Path, n: int = 1_000_000) -> dict[str, Any]:
    """Index build of a 1M-parcel AOI at 10 m, its stored size, builder and worker peak RSS.

    The builder runs in a subprocess (its own peak RSS): SYNTHETIC parcels generated over an
    extent sized for ``n`` parcels, rasterized on the 10 m lattice covering them. The
    worker subprocess loads the stored index and computes the statistics of one full
    10 m band (10980 x 10980 uint16) over it, as an extraction task does.
    """
    builder = _HWM + r"""
import json, sys, time
import numpy as np, shapely
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/scripts"]
from synthetic_parcels import extent_for, make_parcels
from cbm_ops.grid import build_index, lattice_grid
n = int(sys.argv[3])
t0 = time.perf_counter()
geoms = make_parcels(n, extent_for(n), seed=7)
t_gen = time.perf_counter() - t0
grid = lattice_grid(32631, 10.0, tuple(float(v) for v in shapely.total_bounds(geoms)))
t0 = time.perf_counter()
idx = build_index(np.arange(1, geoms.size + 1), geoms, grid)
t_build = time.perf_counter() - t0
data = idx.to_bytes()
open(sys.argv[2], "wb").write(data)
g = idx.grid
open(sys.argv[2] + ".json", "w").write(json.dumps({"grid": {"epsg": g.epsg, "res": g.res, "x0": g.x0, "y0": g.y0,
                                                            "width": g.width, "height": g.height}}))
print(json.dumps({"parcels": int(geoms.size), "generate_s": round(t_gen, 1), "index_build_s": round(t_build, 2),
                  "grid": [g.width, g.height], "runs": idx.n_runs, "pixels": int(idx.npix.sum()),
                  "stored_mb": round(len(data) / 1e6, 1), "peak_rss_gb": hwm_gb()}))
"""
    path = data / f"index_{n}.npz"
    b = subprocess.run([sys.executable, "-c", builder, str(ROOT), str(path), str(n)], capture_output=True,
                       text=True, check=True)
    built = json.loads(b.stdout.strip().splitlines()[-1])
    w = subprocess.run([sys.executable, "-c", _WORKER, str(ROOT), str(path)], capture_output=True, text=True,
                       check=True)
    worker = json.loads(w.stdout.strip().splitlines()[-1])
    return {"builder": built, "worker": worker}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


if __name__ == "__main__":
    print(json.dumps(million_parcels(Path(os.environ.get("BENCH_DATA", ROOT / "bench-output" / "data")),
                                     int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)))
