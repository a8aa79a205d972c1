"""Block-aware reads in `make bench` (called by scripts/bench.py, same run, same data).

* :func:`coverage_subsets`: parcel subsets of the benchmark tile covering 10 %, 30 %, 60 %
  and 100 % of its 10 m JPEG2000 tiles: the parcels nearest a point off the tile centre (a
  block of farmland, as a granule's share of a country), the fewest reaching the share.
* :func:`tile_decode`: the decode of exactly the tiles a parcel set needs, one read per tile
  (the floor a block-aware read is measured against), and of the whole band.
* :func:`write_subset`: a subset as a GeoPackage for ``import_parcels``.

Every figure is SYNTHETIC data (bench.py's tile and LPIS-like parcels).
"""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from cbm_ops.extract.bands import plan_blocks
from cbm_ops.grid import Grid, ParcelIndex


def subindex(idx: ParcelIndex, sel: np.ndarray) -> ParcelIndex:
    """The index of the parcels ``sel`` (positions in ``idx``, sorted)."""
    sel = np.sort(np.asarray(sel))
    n = np.diff(idx.run_ptr)[sel]
    ptr = np.zeros(sel.size + 1, np.int64)
    np.cumsum(n, out=ptr[1:])
    take = np.repeat(idx.run_ptr[sel], n) + (np.arange(ptr[-1]) - np.repeat(ptr[:-1], n))
    return ParcelIndex(grid=idx.grid, pids=idx.pids[sel], run_ptr=ptr, run_row=idx.run_row[take],
                       run_c0=idx.run_c0[take], run_c1=idx.run_c1[take], npix=idx.npix[sel])


def _parcel_tiles(idx: ParcelIndex, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per parcel, the tile rows and columns its pixels span (ty0, ty1, tx0, tx1), inclusive."""
    has = np.diff(idx.run_ptr) > 0
    starts = idx.run_ptr[:-1][has]
    ty0 = np.zeros(idx.pids.size, np.int64)
    ty1, tx0, tx1 = ty0.copy(), ty0.copy(), ty0.copy()
    ty0[has] = np.minimum.reduceat(idx.run_row, starts) // tile
    ty1[has] = np.maximum.reduceat(idx.run_row, starts) // tile
    tx0[has] = np.minimum.reduceat(idx.run_c0, starts) // tile
    tx1[has] = (np.maximum.reduceat(idx.run_c1, starts) - 1) // tile
    return ty0, ty1, tx0, tx1


def coverage_subsets(idx: ParcelIndex, image: Grid, tile: int = 1024,
                     shares: tuple[float, ...] = (0.1, 0.3, 0.6, 1.0)) -> dict[float, np.ndarray]:
    """Parcel subsets (sorted positions in ``idx``) whose pixels lie in ``share`` of the tiles.

    Parcels are taken by distance from a point at 60 % of the width and 35 % of the height
    (a compact block, as the farmland of a granule that is partly sea or forest), the
    fewest whose tiles reach the share; 1.0 is every parcel.
    """
    cx, cy = idx.centroids()
    px = image.x0 + 0.6 * image.width * image.res
    py = image.y0 - 0.35 * image.height * image.res
    d = (cx - px) ** 2 + (cy - py) ** 2
    d[~np.isfinite(d)] = np.inf
    order = np.argsort(d, kind="stable")
    ty0, ty1, tx0, tx1 = _parcel_tiles(idx, tile)
    ntx = -(-image.width // tile)
    total = ntx * -(-image.height // tile)
    out: dict[float, np.ndarray] = {}
    seen: set[int] = set()
    want = sorted(shares)
    k = 0
    for i, p in enumerate(order.tolist()):
        if not np.isfinite(d[p]):
            break
        for ty in range(int(ty0[p]), int(ty1[p]) + 1):
            for tx in range(int(tx0[p]), int(tx1[p]) + 1):
                seen.add(ty * ntx + tx)
        while k < len(want) and want[k] < 1.0 and len(seen) >= want[k] * total - 0.5:
            out[want[k]] = np.sort(order[:i + 1])
            k += 1
    if 1.0 in want:
        out[1.0] = np.arange(idx.pids.size)
    return out


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads: GDAL's, Numba's)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def tile_decode(path: Path, idx: ParcelIndex, repeat: int = 2) -> dict:
    """Decode of exactly the blocks a parcel index needs in one band file, one read per block.

    Returns
    -------
    dict
        blocks, total_blocks, share, pixel_share, tiles_s (median wall), tiles_runs_s,
        tiles_cpu_s (median process CPU, core-s).
    """
    with rasterio.open(path) as ds:
        image = Grid.from_raster(idx.grid.epsg, ds.transform, ds.width, ds.height)
        plan = plan_blocks(image, idx, ds.block_shapes[0])
        bh, bw = ds.block_shapes[0]
    if plan is None:
        return {"blocks": 0, "total_blocks": 0, "share": 0.0, "tiles_s": 0.0, "tiles_runs_s": [], "tiles_cpu_s": 0.0}
    tiles = []
    for r0, c0, h, w in plan.rects:
        for ty in range(r0 // bh, (r0 + h - 1) // bh + 1):
            for tx in range(c0 // bw, (c0 + w - 1) // bw + 1):
                tiles.append((ty * bh, tx * bw, min(bh, image.height - ty * bh), min(bw, image.width - tx * bw)))
    times, cpus = [], []
    for _ in range(repeat):
        c0, t0 = cpu_seconds(), time.perf_counter()
        with rasterio.open(path) as ds:
            for r0, c0_, h, w in tiles:
                ds.read(1, window=Window(c0_, r0, w, h))
        times.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    px = sum(h * w for _, _, h, w in tiles)
    return {"blocks": len(tiles), "total_blocks": plan.total_blocks, "share": round(len(tiles) / plan.total_blocks, 3),
            "pixel_share": round(px / (image.width * image.height), 3), "tiles_s": round(statistics.median(times), 3),
            "tiles_runs_s": [round(t, 3) for t in times], "tiles_cpu_s": round(statistics.median(cpus), 2)}


def write_subset(path: Path, geoms: np.ndarray) -> None:
    """A parcel subset as a GeoPackage (scripts/bench_rasterize.write_gpkg)."""
    from bench_rasterize import write_gpkg

    if not path.exists():
        write_gpkg(path, geoms)


def scene_at_coverage(url: str, cfg, data: Path, sel: np.ndarray | None, idx10: ParcelIndex, idx20: ParcelIndex,
                      decode_whole: dict[str, float], setup) -> dict:
    """One whole S2 scene (SCL, 10 m and 20 m stages, claim to commit through ``run_queue``) on
    the parcels ``sel`` against the decode of exactly the tiles they need (same run, just before).

    Parameters
    ----------
    cfg : AoiConfig
        The AOI of the subset (its parcels imported, scene harvested and queued by ``setup``).
    sel : int ndarray or None
        Positions of the subset's parcels in ``idx10``/``idx20`` (None: all).
    decode_whole : dict
        Whole-band decode wall seconds per kind: ``10m``, ``20m``, ``scl``.
    setup : callable
        ``setup(cfg)`` imports the subset's parcels, harvests and queues the scene and builds
        the stored indexes (not timed).
    """
    from cbm_ops.extract import run_queue

    i10 = idx10 if sel is None else subindex(idx10, sel)
    i20 = idx20 if sel is None else subindex(idx20, sel)
    setup(cfg)
    dec = {"10m": tile_decode(data / "B04.jp2", i10), "scl": tile_decode(data / "SCL.jp2", i20),
           "20m": tile_decode(data / "B20.jp2", i20)}
    mult = {"10m": 4, "20m": 2, "scl": 1}            # band files per kind in the scene
    tiles_s = sum(mult[k] * d["tiles_s"] for k, d in dec.items())
    tiles_cpu = sum(mult[k] * d["tiles_cpu_s"] for k, d in dec.items())
    whole_s = sum(mult[k] * decode_whole[k] for k in mult)
    stages = {}
    for stage in ("scl", "s2_10m", "s2_20m"):
        c0, t0 = cpu_seconds(), time.perf_counter()
        r = run_queue(url, cfg, stage)
        res = r["results"][0]
        stages[stage] = {"s": round(time.perf_counter() - t0, 2), "cpu_s": round(cpu_seconds() - c0, 2),
                         "rows": res.get("rows", 0), "parcels": res.get("parcels", 0), "status": res["status"],
                         **{k: res.get(k) for k in ("read_s", "stats_s", "write_s")}}
    scene_s = sum(v["s"] for v in stages.values())
    scene_cpu = sum(v["cpu_s"] for v in stages.values())
    return {"scene_s": round(scene_s, 2), "decode_tiles_s": round(tiles_s, 2),
            "ratio_vs_tiles": round(scene_s / tiles_s, 3),
            "decode_whole_s": round(whole_s, 2), "ratio_vs_whole": round(scene_s / whole_s, 3),
            "scene_cpu_s": round(scene_cpu, 2), "decode_tiles_cpu_s": round(tiles_cpu, 2),
            "cpu_ratio_vs_tiles": round(scene_cpu / tiles_cpu, 3) if tiles_cpu else None,
            "block_share_10m": dec["10m"]["share"], "block_share_20m": dec["20m"]["share"],
            "blocks": {k: [d["blocks"], d["total_blocks"]] for k, d in dec.items()},
            "tile_decode_runs_s": {k: d["tiles_runs_s"] for k, d in dec.items()},
            "tile_decode_cpu_s": {k: d["tiles_cpu_s"] for k, d in dec.items()},
            "parcels": int(i10.pids.size), "parcels_with_data": stages["s2_10m"]["parcels"], "stages": stages}
