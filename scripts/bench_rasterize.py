"""Benchmark helpers: parcel index build (Numba scanline vs the former rasterio build) and
``zonal_stats`` against exactextract and rasterstats, on SYNTHETIC realistic parcels.

For the lead's ``make bench`` (import and call):

* :func:`bench_index` ``(geoms, grid, repeat=3) -> dict``: ``build_index`` (median of
  ``repeat`` warm runs) against :func:`build_index_rasterio` (the rasterio-based build
  this project used before, kept here for comparison only) and whether both give every
  parcel the same pixels;
* :func:`bench_zonal` ``(tif_path, geoms) -> dict``: ``cbm_ops.extract.zonal_stats`` on
  all parcels against exactextract (all parcels) and rasterstats (a subset, extrapolated
  and labelled EXTRAPOLATED), with an exactness check against rasterstats on the subset.

Standalone (generates and caches a T31UDS-sized uint16 GeoTIFF and the parcels under
bench-output/raster/)::

    python scripts/bench_rasterize.py [--parcels 200000] [--repeat 3] [--skip-old] [--skip-peers]

Figures are printed as JSON lines, with the machine load (1-minute load average) seen
before and after each measurement: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import shapely  # noqa: E402
from affine import Affine  # noqa: E402

from cbm_ops.grid import Grid, ParcelIndex, build_index, kernels  # noqa: E402

OUT = ROOT / "bench-output" / "raster"
TILE_X0, TILE_Y0, N10, EPSG = 499980.0, 5700000.0, 10980, 32631
RS_STATS = "count mean std min max percentile_25 percentile_50 percentile_75"
RS_KEYS = {"mean": "mean", "std": "std", "min": "min", "max": "max",
           "p25": "percentile_25", "p50": "percentile_50", "p75": "percentile_75"}


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ------------------------------------------------------------------------- former build
def _drop_labels(part: tuple[np.ndarray, ...], labels: np.ndarray) -> tuple[np.ndarray, ...]:
    keep = ~np.isin(part[0], labels)
    return tuple(a[keep] for a in part)


def build_index_rasterio(pids: np.ndarray, geoms: np.ndarray, grid: Grid, *, all_touched: bool = False,
                         tile: int = 8192) -> ParcelIndex:
    """The former ``build_index`` (rasterio), for comparison only.

    Parcels burnt together per tile of ``tile`` x ``tile`` pixels with
    ``rasterio.features.rasterize``, a second additive burn counting the parcels per
    pixel, and every parcel that can claim a shared pixel rasterized again alone in its
    window; label raster run-length encoded with ``kernels.label_runs``.
    """
    from rasterio.enums import MergeAlg
    from rasterio.features import rasterize

    t0 = time.perf_counter()
    xr, yr = grid.res, grid.res_y
    P = len(pids)
    parts: list[tuple[np.ndarray, ...]] = []
    shared: set[int] = set()
    tree = shapely.STRtree(geoms)
    for r in range(0, grid.height, tile):
        for c in range(0, grid.width, tile):
            h, w = min(tile, grid.height - r), min(tile, grid.width - c)
            x0 = grid.x0 + c * xr
            y0 = grid.y0 - r * yr
            transform = Affine(xr, 0, x0, 0, -yr, y0)
            idx = tree.query(shapely.box(x0, y0 - h * yr, x0 + w * xr, y0), predicate="intersects")
            if idx.size == 0:
                continue
            labels = rasterize(zip(geoms[idx], idx.astype(np.int64) + 1, strict=True), out_shape=(h, w),
                               transform=transform, fill=0, all_touched=all_touched, dtype="int32")
            claims = rasterize(((g, 1) for g in geoms[idx]), out_shape=(h, w), transform=transform,
                               fill=0, all_touched=all_touched, dtype="uint8", merge_alg=MergeAlg.add)
            rr, cc = np.nonzero(claims > 1)
            if rr.size:
                px = x0 + cc * xr
                py = y0 - rr * yr
                probe = (shapely.box(px, py - yr, px + xr, py) if all_touched
                         else shapely.points(px + xr / 2, py - yr / 2))
                shared.update(tree.query(probe, predicate="intersects")[1].tolist())
            parts.append(kernels.label_runs(labels, r, c))
            del labels, claims
    aside = np.array(sorted(shared), np.int64)
    if aside.size:
        parts = [_drop_labels(p, aside + 1) for p in parts]
    for i in aside:
        minx, miny, maxx, maxy = geoms[i].bounds
        c0 = max(0, math.floor((minx - grid.x0) / xr) - 1)
        r0 = max(0, math.floor((grid.y0 - maxy) / yr) - 1)
        c1 = min(grid.width, math.ceil((maxx - grid.x0) / xr) + 1)
        r1 = min(grid.height, math.ceil((grid.y0 - miny) / yr) + 1)
        if c1 <= c0 or r1 <= r0:
            continue
        labels = rasterize([(geoms[i], int(i) + 1)], out_shape=(r1 - r0, c1 - c0),
                           transform=Affine(xr, 0, grid.x0 + c0 * xr, 0, -yr, grid.y0 - r0 * yr),
                           fill=0, all_touched=all_touched, dtype="int32")
        parts.append(kernels.label_runs(labels, r0, c0))
    if parts:
        lab = np.concatenate([p[0] for p in parts]) - 1
        row, a, b = (np.concatenate([p[k] for p in parts]) for k in (1, 2, 3))
    else:
        lab = row = a = b = np.zeros(0, np.int32)
    order = np.argsort(lab, kind="stable")
    lab, row, a, b = lab[order], row[order], a[order], b[order]
    counts = np.bincount(lab, minlength=P)
    run_ptr = np.zeros(P + 1, np.int64)
    np.cumsum(counts, out=run_ptr[1:])
    npix = np.bincount(lab, weights=(b - a), minlength=P).astype(np.int64)
    idx = ParcelIndex(grid=grid, pids=np.asarray(pids, np.int32), run_ptr=run_ptr, run_row=row,
                      run_c0=a, run_c1=b, npix=npix, all_touched=all_touched)
    idx.seconds = round(time.perf_counter() - t0, 3)
    idx.timings = {"shared_parcels": int(aside.size), "total_s": idx.seconds}
    return idx


def canonical_runs(idx: ParcelIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(parcel, row, c0, c1) of an index, sorted and with adjacent runs merged."""
    lab = np.repeat(np.arange(idx.run_ptr.size - 1), np.diff(idx.run_ptr))
    order = np.lexsort((idx.run_c0, idx.run_row, lab))
    lab, row, a, b = lab[order], idx.run_row[order], idx.run_c0[order], idx.run_c1[order]
    if lab.size == 0:
        return lab, row, a, b
    new = np.r_[True, (lab[1:] != lab[:-1]) | (row[1:] != row[:-1]) | (a[1:] != b[:-1])]
    starts = np.flatnonzero(new)
    return lab[starts], row[starts], a[starts], np.maximum.reduceat(b, starts)


def same_pixels(i1: ParcelIndex, i2: ParcelIndex) -> tuple[bool, int]:
    """(identical, number of parcels whose pixels differ)."""
    c1, c2 = canonical_runs(i1), canonical_runs(i2)
    if all(np.array_equal(x, y) for x, y in zip(c1, c2, strict=True)):
        return True, 0
    key1 = {(int(p), int(r), int(a), int(b)) for p, r, a, b in zip(*c1, strict=True)}
    key2 = {(int(p), int(r), int(a), int(b)) for p, r, a, b in zip(*c2, strict=True)}
    return False, len({k[0] for k in key1 ^ key2})


# ------------------------------------------------------------------------- measurements
def bench_index(geoms: np.ndarray, grid: Grid, repeat: int = 3, *, all_touched: bool = False,
                old: bool = True) -> dict:
    """Index build: Numba scanline ``build_index`` against the former rasterio build.

    Parameters
    ----------
    geoms : ndarray of shapely Polygons, shape (P,)
    grid : Grid
    repeat : int
        Warm runs of the new build (the median is reported; the first, compiling or
        loading the Numba cache, is reported apart).
    all_touched : bool
    old : bool
        Also time :func:`build_index_rasterio` once and compare the pixels.

    Returns
    -------
    dict
        parcels, grid, threads, first_call_s, new_s (median), new_runs_s, runs, pixels,
        old_s, speedup, identical, parcels_differing, load_before/after.
    """
    import numba

    pids = np.arange(1, geoms.size + 1)
    out: dict = {"metric": "index_build", "parcels": int(geoms.size), "all_touched": all_touched,
                 "grid": f"{grid.width}x{grid.height} {grid.res}x{grid.res_y} m",
                 "threads": numba.get_num_threads(), "load_before": load()}
    t0 = time.perf_counter()
    idx = build_index(pids, geoms, grid, all_touched=all_touched)
    out["first_call_s"] = round(time.perf_counter() - t0, 3)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        idx = build_index(pids, geoms, grid, all_touched=all_touched)
        times.append(time.perf_counter() - t0)
    out |= {"new_s": round(statistics.median(times), 3), "new_runs_s": [round(t, 3) for t in times],
            "kernel_s": idx.timings["rasterize_s"] if idx.timings else None,
            "runs": idx.n_runs, "pixels": int(idx.npix.sum())}
    if old:
        t0 = time.perf_counter()
        ref = build_index_rasterio(pids, geoms, grid, all_touched=all_touched)
        out["old_s"] = round(time.perf_counter() - t0, 2)
        out["old_shared_parcels"] = ref.timings["shared_parcels"] if ref.timings else None
        out["speedup"] = round(out["old_s"] / out["new_s"], 1)
        out["identical"], out["parcels_differing"] = same_pixels(idx, ref)
    out["load_after"] = load()
    return out


def write_gpkg(path: Path, geoms: np.ndarray, epsg: int = EPSG) -> None:
    from osgeo import gdal, ogr, osr

    gdal.UseExceptions()
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = ds.CreateLayer("parcels", srs, ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    defn = lyr.GetLayerDefn()
    lyr.StartTransaction()
    for k, wkb in enumerate(shapely.to_wkb(geoms)):
        f = ogr.Feature(defn)
        f.SetField("name", f"p{k + 1}")
        f.SetGeometry(ogr.CreateGeometryFromWkb(wkb))
        lyr.CreateFeature(f)
    lyr.CommitTransaction()
    ds = None


def bench_zonal(tif_path: str | Path, geoms: np.ndarray, *, subset: int = 2000, repeat: int = 3,
                vector_path: str | Path | None = None, exactextract: bool = True, nodata: float | None = 0
                ) -> dict:
    """``zonal_stats`` (all parcels) against exactextract (all) and rasterstats (subset).

    Parameters
    ----------
    tif_path : path
        Raster (any GDAL format) in the parcels' CRS.
    geoms : ndarray of shapely Polygons, shape (P,)
    subset : int
        Parcels for rasterstats (every k-th); its full-set time is EXTRAPOLATED linearly.
    repeat : int
        Runs of ours (median reported, after one warm-up run).
    vector_path : path, optional
        The parcels as a vector file for exactextract (written to a temporary GPKG if None).
    exactextract : bool
        Run exactextract, both strategies (``raster-sequential`` and its default
        ``feature-sequential``; the faster is reported as ``exactextract_s``).
    nodata : float, optional
        Nodata value for ours and rasterstats.

    Returns
    -------
    dict
        ours_s, exactextract_s, rasterstats_subset_s, rasterstats_full_s_EXTRAPOLATED,
        ratios, exact_vs_rasterstats (subset), load_before/after.
    """
    from rasterstats import zonal_stats as rs_zonal

    from cbm_ops.extract import zonal_stats

    tif_path = str(tif_path)
    out: dict = {"metric": "zonal_stats", "parcels": int(geoms.size), "raster": tif_path, "load_before": load()}
    zonal_stats(tif_path, geoms[:10], nodata=nodata)                  # compile / load the caches
    times = []
    ours = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        ours = zonal_stats(tif_path, geoms, nodata=nodata)
        times.append(time.perf_counter() - t0)
    out |= {"ours_s": round(statistics.median(times), 3), "ours_runs_s": [round(t, 3) for t in times]}
    if exactextract:
        from exactextract import exact_extract

        tmp = None
        if vector_path is None:
            tmp = tempfile.TemporaryDirectory()
            vector_path = Path(tmp.name) / "parcels.gpkg"
            write_gpkg(vector_path, geoms)
        ops = ["count", "mean", "stdev", "min", "max", "quantile(q=0.25)", "median", "quantile(q=0.75)"]
        strategies = {}
        for strategy in ("raster-sequential", "feature-sequential"):   # both: the faster one is the peer
            with tempfile.TemporaryDirectory() as td:
                t0 = time.perf_counter()
                exact_extract(tif_path, str(vector_path), ops, output="gdal", strategy=strategy,
                              output_options={"filename": str(Path(td) / "ee.csv")})
                strategies[strategy] = round(time.perf_counter() - t0, 2)
        if tmp is not None:
            tmp.cleanup()
        best = min(strategies, key=strategies.__getitem__)
        out |= {"exactextract_s": strategies[best], "exactextract_strategy": best,
                "exactextract_strategies_s": strategies}
        out["exactextract_over_ours"] = round(out["exactextract_s"] / out["ours_s"], 1)
    step = max(1, geoms.size // subset)
    sub_i = np.arange(0, geoms.size, step)[:subset]
    t0 = time.perf_counter()
    ref = rs_zonal(list(geoms[sub_i]), tif_path, nodata=nodata, stats=RS_STATS)
    t_rs = time.perf_counter() - t0
    full = t_rs * geoms.size / sub_i.size
    out |= {"rasterstats_subset_parcels": int(sub_i.size), "rasterstats_subset_s": round(t_rs, 2),
            "rasterstats_full_s_EXTRAPOLATED": round(full, 1),
            "rasterstats_over_ours_EXTRAPOLATED": round(full / out["ours_s"], 1)}
    bad = 0
    for i, r in zip(sub_i, ref, strict=True):
        o = ours[i] if ours is not None else {}
        if o["count"] != (r["count"] or 0):
            bad += 1
            continue
        if o["count"] and any(not math.isclose(o[k], float(r[rk]), rel_tol=1e-6, abs_tol=1e-9)
                              for k, rk in RS_KEYS.items()):
            bad += 1
    out["exact_vs_rasterstats"] = bad == 0
    out["subset_parcels_differing"] = bad
    out["load_after"] = load()
    return out


# ------------------------------------------------------------------------- data
def make_tile(path: Path, geoms: np.ndarray, seed: int = 2) -> None:
    """SYNTHETIC uint16 GeoTIFF of T31UDS (10980 x 10980, 10 m): a level per parcel plus noise."""
    import rasterio

    rng = np.random.default_rng(seed)
    grid = Grid(epsg=EPSG, res=10.0, x0=TILE_X0, y0=TILE_Y0, width=N10, height=N10)
    idx = build_index(np.arange(geoms.size), geoms, grid)
    band = rng.integers(800, 3000, (N10, N10)).astype(np.float32)
    level = rng.integers(500, 4000, geoms.size).astype(np.float32)
    lab = np.repeat(np.arange(geoms.size), np.diff(idx.run_ptr))
    for p, r, a, b in zip(lab, idx.run_row, idx.run_c0, idx.run_c1, strict=True):
        band[r, a:b] = level[p]
    band += rng.normal(0, 120, band.shape).astype(np.float32)
    b04 = np.clip(band, 1, 65535).astype(np.uint16)
    prof = dict(width=N10, height=N10, count=1, dtype="uint16", crs=f"EPSG:{EPSG}",
                transform=Affine(10, 0, TILE_X0, 0, -10, TILE_Y0))
    with rasterio.open(path, "w", driver="GTiff", tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate", predictor=2, **prof) as ds:
        ds.write(b04, 1)


def main() -> int:
    from synthetic_parcels import TILE_BOUNDS, make_parcels

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parcels", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-old", action="store_true", help="do not time the former rasterio build")
    ap.add_argument("--skip-peers", action="store_true", help="skip zonal_stats vs exactextract/rasterstats")
    ap.add_argument("--all-touched", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    geoms = make_parcels(args.parcels, TILE_BOUNDS, seed=1)
    print(json.dumps({"metric": "make_parcels", "parcels": int(geoms.size),
                      "s": round(time.perf_counter() - t0, 1), "load": load()}), flush=True)
    grid = Grid(epsg=EPSG, res=10.0, x0=TILE_X0, y0=TILE_Y0, width=N10, height=N10)
    print(json.dumps(bench_index(geoms, grid, args.repeat, all_touched=args.all_touched, old=not args.skip_old)),
          flush=True)
    if not args.skip_peers:
        tif = OUT / f"B04-{geoms.size}.tif"
        gpkg = OUT / f"parcels-{geoms.size}.gpkg"
        if not tif.exists():
            make_tile(tif, geoms)
        if not gpkg.exists():
            write_gpkg(gpkg, geoms)
        print(json.dumps(bench_zonal(tif, geoms, repeat=args.repeat, vector_path=gpkg)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
