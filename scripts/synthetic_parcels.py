"""SYNTHETIC LPIS-like parcels for benchmarks: Voronoi fields with gaps and wiggly borders.

``make_parcels(n, bounds, seed=...)`` returns ``n`` valid, pairwise disjoint shapely
Polygons of 0.5-5 ha with 25-35 vertices each, deterministic for a seed:

1. Poisson seeds (mean Voronoi cell 2.2 ha) over the bounds, ranked by "farmland", a
   smooth random field (a few plane waves of 3-15 km plus noise): only the best-ranked
   seeds (1.6 n) get GEOS Voronoi cells (``shapely.voronoi_polygons``), so parcels come
   in contiguous blocks with non-agricultural land between them, as in a real LPIS;
2. cells crossing the bounds or outside 0.5-5 ha are dropped, the ``n`` best-ranked kept;
3. each cell is shrunk towards its vertex mean (homothety; its nearest edge moves in by
   1.5 m), densified to 25-35 vertices (pieces per edge proportional to its length) and
   its vertices jittered by less than a third of the shrink margin and of the segment
   lengths: every polygon stays inside its own Voronoi cell, so parcels are pairwise
   disjoint (mostly 2 m or more apart), and valid (checked; the rare invalid one keeps
   its smooth border).

About 200,000 parcels fit the full T31UDS tile (EPSG:32631, upper-left 499980, 5700000,
109.8 km square): ``make_parcels(200_000, TILE_BOUNDS)``; 1M need a larger extent
(``extent_for(1_000_000)``).

    python scripts/synthetic_parcels.py [--n 200000] [--out parcels.gpkg]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import shapely

TILE_BOUNDS = (499980.0, 5700000.0 - 109800.0, 499980.0 + 109800.0, 5700000.0)   # T31UDS
MEAN_CELL_M2 = 22_000.0        # Poisson seed density: mean Voronoi cell 2.2 ha
MIN_HA, MAX_HA = 0.5, 5.0
SHRINK_M = 1.5                 # nearest edge of each cell moves in by this (gap >= 3 m)


def extent_for(n: int, share: float = 0.75, x0: float = TILE_BOUNDS[0], y1: float = TILE_BOUNDS[3]
               ) -> tuple[float, float, float, float]:
    """Square bounds (upper-left x0, y1) where ``n`` parcels take ``share`` of the cells
    (1M parcels: 171 km square)."""
    side = math.sqrt(n / share * MEAN_CELL_M2)
    return (x0, y1 - side, x0 + side, y1)


def _farmland(xy: np.ndarray, bounds, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field (sum of plane waves of 3-15 km wavelength) at points xy."""
    minx, miny, maxx, maxy = bounds
    f = np.zeros(len(xy))
    for _ in range(12):
        lam = rng.uniform(3_000, 15_000)
        ang = rng.uniform(0, np.pi)
        ph = rng.uniform(0, 2 * np.pi)
        k = 2 * np.pi / lam
        f += np.cos(k * ((xy[:, 0] - minx) * np.cos(ang) + (xy[:, 1] - miny) * np.sin(ang)) + ph)
    return f + rng.normal(0, 0.3, len(xy))          # ragged block borders


def make_parcels(n: int, bounds: tuple[float, float, float, float] = TILE_BOUNDS, *, seed: int = 1,
                 where=None) -> np.ndarray:
    """``n`` SYNTHETIC LPIS-like parcels (shapely Polygons) in ``bounds`` (metres).

    Parameters
    ----------
    n : int
        Number of parcels.
    bounds : (minx, miny, maxx, maxy)
        Extent in a metric CRS (UTM).
    seed : int
        Random seed; the same (n, bounds, seed) give the same polygons.
    where : shapely geometry, optional
        Seeds only inside it (land of a country, same CRS): parcels lie on it but near its
        border (a coast).

    Returns
    -------
    ndarray of shapely Polygons, shape (n,)
        Valid, pairwise disjoint, 0.5-5 ha, 25-35 vertices (a ring of more than 35
        Voronoi edges keeps them all); sorted north to south.

    Raises
    ------
    ValueError
        If the bounds cannot hold ``n`` parcels of that size.
    """
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = map(float, bounds)
    area = (maxx - minx) * (maxy - miny)
    n_seeds = int(rng.poisson(area / MEAN_CELL_M2))
    pts = np.column_stack([rng.uniform(minx, maxx, n_seeds), rng.uniform(miny, maxy, n_seeds)])
    if where is not None:
        shapely.prepare(where)
        pts = pts[shapely.contains_xy(where, pts[:, 0], pts[:, 1])]
        n_seeds = len(pts)
    # farmland first: only the best-ranked seeds get Voronoi cells (cells at the fringe
    # of that set are larger and mostly fail the size filter; all stay disjoint)
    score = _farmland(pts, (minx, miny, maxx, maxy), rng)
    n_sel = min(n_seeds, int(1.6 * n) + 1000)
    sel = np.sort(np.argsort(-score, kind="stable")[:n_sel])
    box = shapely.box(minx, miny, maxx, maxy)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts[sel]), extend_to=box,
                                                        ordered=True))
    b = shapely.bounds(cells)
    inside = (b[:, 0] >= minx) & (b[:, 1] >= miny) & (b[:, 2] <= maxx) & (b[:, 3] <= maxy)
    a = shapely.area(cells)
    cand = np.flatnonzero(inside & (a >= MIN_HA * 1e4) & (a <= MAX_HA * 1e4))
    m = min(cand.size, int(n * 1.05) + 100)          # a few fall below 0.5 ha when shrunk
    if m < n:
        raise ValueError(f"bounds of {area / 1e6:.0f} km2 hold only {cand.size} cells of {MIN_HA}-{MAX_HA} ha, "
                         f"not {n}: enlarge them (extent_for)")
    cells = cells[cand[np.argsort(-score[sel][cand], kind="stable")[:m]]]     # ranked by the field

    # shrink towards the vertex mean (inside the convex cell): homothety, factor 1 - shrink,
    # so that the nearest edge moves in by SHRINK_M
    xy, gi = shapely.get_coordinates(cells, return_index=True)
    last = np.r_[gi[1:] != gi[:-1], True]            # closing vertex of each ring
    xy, gi = xy[~last], gi[~last]
    starts = np.flatnonzero(np.r_[True, gi[1:] != gi[:-1]])
    nv = np.diff(np.r_[starts, len(xy)])
    cen = np.add.reduceat(xy, starts) / nv[:, None]
    nxt = np.arange(len(xy)) + 1
    nxt[starts + nv - 1] = starts                    # edge i -> nxt[i], wrapping per ring
    e = xy[nxt] - xy
    ln = np.hypot(e[:, 0], e[:, 1])
    c = cen[gi] - xy
    dist = np.abs(e[:, 0] * c[:, 1] - e[:, 1] * c[:, 0]) / np.maximum(ln, 1e-9)
    h_min = np.minimum.reduceat(dist, starts)
    shrink = np.minimum(SHRINK_M / np.maximum(h_min, 1e-9), 0.2)
    f = (1.0 - shrink)[gi]
    a0 = cen[gi] + (xy - cen[gi]) * f[:, None]       # shrunk vertices (edge starts)
    e = e * f[:, None]
    ln = ln * f

    # densify to t vertices (25-35): edge i is cut into p_i >= 1 pieces, p_i proportional
    # to its length, the remainder going to the largest fractional parts
    target = rng.integers(25, 36, m)
    perim = np.add.reduceat(ln, starts)
    raw = ln * target[gi] / perim[gi]
    p = np.maximum(1, np.floor(raw)).astype(np.int64)
    rem = target - np.add.reduceat(p, starts)
    order = np.lexsort((p - raw, gi))                # per ring, largest fraction first
    rank = np.empty(len(xy), np.int64)
    rank[order] = np.arange(len(xy)) - starts[gi[order]]
    p += rank < rem[gi]
    edge = np.repeat(np.arange(len(xy)), p)
    q = np.arange(edge.size) - np.repeat(np.cumsum(p) - p, p)
    dense_xy = a0[edge] + e[edge] * (q / p[edge])[:, None]
    dense_gi = gi[edge]

    # jitter: below a third of the margin to the Voronoi border and of the segment length
    min_seg = np.minimum.reduceat(ln / p, starts)
    margin = shrink * h_min                          # shrunk border -> Voronoi border
    amp = np.minimum(np.minimum(margin / 3.0, min_seg / 3.0), 1.0)
    jit = rng.uniform(-1, 1, dense_xy.shape) * (amp[dense_gi] / math.sqrt(2))[:, None]
    out = shapely.polygons(shapely.linearrings(dense_xy + jit, indices=dense_gi))
    bad = np.flatnonzero(~shapely.is_valid(out))
    if bad.size:                                     # keep the smooth border
        rows = np.isin(dense_gi, bad)
        out[bad] = shapely.polygons(shapely.linearrings(dense_xy[rows], indices=dense_gi[rows]))[bad]
    a = shapely.area(out)
    out = out[(a >= MIN_HA * 1e4) & (a <= MAX_HA * 1e4)][:n]          # the n best-ranked
    if out.size < n:
        raise ValueError(f"only {out.size} parcels of {MIN_HA}-{MAX_HA} ha after shrinking: enlarge the bounds")
    bb = shapely.bounds(out)
    return out[np.lexsort((bb[:, 0], -bb[:, 3]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="write a GeoPackage (EPSG:32631)")
    args = ap.parse_args()
    bounds = TILE_BOUNDS if args.n <= 200_000 else extent_for(args.n)
    t0 = time.perf_counter()
    geoms = make_parcels(args.n, bounds, seed=args.seed)
    dt = time.perf_counter() - t0
    nv = shapely.get_num_coordinates(geoms) - 1
    area = shapely.area(geoms) / 1e4
    print(f"{geoms.size} SYNTHETIC parcels in {dt:.1f} s; area {area.min():.2f}-{area.max():.2f} ha "
          f"(median {np.median(area):.2f}); vertices {nv.min()}-{nv.max()} (median {int(np.median(nv))}, "
          f"{np.mean((nv >= 25) & (nv <= 35)):.0%} in 25-35); valid {shapely.is_valid(geoms).all()}")
    if args.out:
        from osgeo import gdal, ogr, osr
        gdal.UseExceptions()
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(32631)
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(args.out)
        lyr = ds.CreateLayer("parcels", srs, ogr.wkbPolygon)
        lyr.StartTransaction()
        for wkb in shapely.to_wkb(geoms):
            feat = ogr.Feature(lyr.GetLayerDefn())
            feat.SetGeometry(ogr.CreateGeometryFromWkb(wkb))
            lyr.CreateFeature(feat)
        lyr.CommitTransaction()
        ds = None


if __name__ == "__main__":
    main()
