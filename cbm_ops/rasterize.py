"""UTM rasterization: parcels on an image grid, as a run-length parcel index.

Membership is the pixel-centre rule on the image's own grid: ``rasterio.features.rasterize``
with ``all_touched=False`` (configurable), exactly what rasterstats does per geometry. The
reference rasterized each parcel off the image grid and got 4-18 % of the pixels wrong.

A *lattice* is (EPSG, resolution, origin modulo resolution). Every Sentinel-2 tile of a
UTM zone lies on the lattice (EPSG, 10|20|60 m, origin 0): one index per lattice serves
every S2 scene of the AOI. Indexes are built once per (AOI, EPSG, resolution, lattice)
by :func:`rasterize_aoi`, stored in ``parcel_grids`` (compressed, chunked) where every
worker reads them, and keyed on the parcel set's version so a changed parcel set
invalidates them. Scenes whose grid matches no stored lattice (S1 CARD "Auto UTM" grids)
are rasterized for the scene and kept in a small per-process cache.

Parcels are burnt together in tiles; a second, additive burn counts the parcels claiming
each pixel. Parcels that share a pixel (overlapping parcels, or a pixel centre lying
exactly on a common boundary, which GDAL gives to both) are rasterized again one by one,
so every parcel gets exactly the pixels rasterstats would give it.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine

from . import kernels
from .config import AoiConfig
from .db import q, transaction

log = logging.getLogger(__name__)

TILE = 8192                   # rasterize in tiles of at most TILE x TILE pixels (int32: 256 MB)
CHUNK_BYTES = 64 * 2**20      # bytea chunk size in parcel_grid_chunks


class GridError(ValueError):
    """An image grid cannot be used with a parcel index (rotated, other CRS, off-lattice)."""


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: upper-left corner (x0, y0), square pixels of ``res`` metres."""

    epsg: int
    res: float
    x0: float
    y0: float
    width: int
    height: int

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0.0, self.x0, 0.0, -self.res, self.y0)

    @property
    def lattice(self) -> tuple[int, float, float, float]:
        """(EPSG, resolution, x0 mod res, y0 mod res), rounded to the millimetre."""
        return (self.epsg, self.res, round(self.x0 % self.res, 3) % self.res,
                round(self.y0 % self.res, 3) % self.res)

    @classmethod
    def from_raster(cls, epsg: int, transform: Affine, width: int, height: int) -> Grid:
        """The grid of a raster (rasterio transform).

        Raises
        ------
        GridError
            If pixels are not square and north-up (rotation or shear).
        """
        a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
        if b != 0 or d != 0 or a <= 0 or not math.isclose(-e, a, rel_tol=1e-9):
            raise GridError(f"image grid is not north-up with square pixels: {tuple(transform)[:6]}")
        return cls(epsg=epsg, res=float(a), x0=float(c), y0=float(f), width=int(width), height=int(height))

    def offset_in(self, other: Grid) -> tuple[int, int]:
        """(row, col) of this grid's first pixel in ``other`` (same lattice).

        Raises
        ------
        GridError
            If the grids are not on the same lattice.
        """
        if self.epsg != other.epsg or not math.isclose(self.res, other.res, rel_tol=1e-9):
            raise GridError(f"grid EPSG:{self.epsg} {self.res} m does not match "
                            f"EPSG:{other.epsg} {other.res} m")
        col = (self.x0 - other.x0) / self.res
        row = (other.y0 - self.y0) / self.res
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            raise GridError(f"grid origin ({self.x0}, {self.y0}) is off the lattice of "
                            f"({other.x0}, {other.y0}) at {self.res} m")
        return int(round(row)), int(round(col))


def lattice_grid(epsg: int, res: float, bounds: tuple[float, float, float, float],
                 origin: tuple[float, float] = (0.0, 0.0)) -> Grid:
    """Smallest grid on the lattice (origin + k * res) that covers ``bounds``.

    Parameters
    ----------
    bounds : (minx, miny, maxx, maxy) in metres of ``epsg``.
    origin : lattice origin modulo ``res`` (0, 0 for Sentinel-2).
    """
    minx, miny, maxx, maxy = bounds
    ox, oy = origin
    x0 = math.floor((minx - ox) / res) * res + ox
    y0 = math.ceil((maxy - oy) / res) * res + oy
    width = max(1, math.ceil((maxx - x0) / res))
    height = max(1, math.ceil((y0 - miny) / res))
    return Grid(epsg=epsg, res=float(res), x0=x0, y0=y0, width=width, height=height)


@dataclass
class ParcelIndex:
    """Run-length parcel index on a grid (see :mod:`cbm_ops.kernels`).

    Attributes
    ----------
    grid : Grid
    pids : int32 ndarray, shape (P,)
        Parcel ids (``ogc_fid``).
    run_ptr : int64 ndarray, shape (P + 1,)
    run_row, run_c0, run_c1 : int32 ndarray, shape (R,)
        Grid row, first column, end column (exclusive) of each run.
    npix : int64 ndarray, shape (P,)
        Pixels per parcel in the whole grid.
    """

    grid: Grid
    pids: np.ndarray
    run_ptr: np.ndarray
    run_row: np.ndarray
    run_c0: np.ndarray
    run_c1: np.ndarray
    npix: np.ndarray
    all_touched: bool = False
    parcels_version: str = ""
    seconds: float = 0.0
    timings: dict[str, float] | None = None   # rasterize / runs phases of build_index (s)
    source: str = "memory"                    # "stored:<grid_id>" or "scene" (index_for_grid)
    _centroids: tuple[np.ndarray, np.ndarray] | None = None

    def centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel centroid of every parcel in map units of the grid's CRS.

        Returns
        -------
        (x, y) : float64 ndarrays, shape (P,)
            Mean of the parcel's pixel centres (metres); NaN for parcels without pixels.
        """
        if self._centroids is None:
            P = self.pids.size
            lab = np.repeat(np.arange(P), np.diff(self.run_ptr))
            n = (self.run_c1 - self.run_c0).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                cx = np.bincount(lab, weights=n * (self.run_c0 + self.run_c1) / 2.0, minlength=P) / self.npix
                cy = np.bincount(lab, weights=n * (self.run_row + 0.5), minlength=P) / self.npix
            g = self.grid
            self._centroids = (g.x0 + cx * g.res, g.y0 - cy * g.res)
        return self._centroids

    @property
    def max_pixels(self) -> int:
        return int(self.npix.max()) if self.npix.size else 0

    @property
    def n_runs(self) -> int:
        return int(self.run_row.size)

    def row_range(self) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1) bounding box of all runs in grid coordinates."""
        if self.run_row.size == 0:
            return 0, 0, 0, 0
        return (int(self.run_row.min()), int(self.run_row.max()) + 1,
                int(self.run_c0.min()), int(self.run_c1.max()))

    # --------------------------------------------------------------- serialisation
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, pids=self.pids, run_ptr=self.run_ptr, run_row=self.run_row,
                            run_c0=self.run_c0, run_c1=self.run_c1, npix=self.npix)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, grid: Grid, all_touched: bool, version: str) -> ParcelIndex:
        z = np.load(io.BytesIO(data))
        return cls(grid=grid, pids=z["pids"], run_ptr=z["run_ptr"], run_row=z["run_row"],
                   run_c0=z["run_c0"], run_c1=z["run_c1"], npix=z["npix"],
                   all_touched=all_touched, parcels_version=version)


def _drop_labels(part: tuple[np.ndarray, ...], labels: np.ndarray) -> tuple[np.ndarray, ...]:
    keep = ~np.isin(part[0], labels)
    return tuple(a[keep] for a in part)


def build_index(pids: np.ndarray, geoms: np.ndarray, grid: Grid, *, all_touched: bool = False
                ) -> ParcelIndex:
    """Rasterize parcels on ``grid`` and run-length encode them.

    Parameters
    ----------
    pids : int ndarray, shape (P,)
        Parcel ids.
    geoms : ndarray of shapely geometries, shape (P,)
        Parcels in the grid's CRS (metres).
    grid : Grid
    all_touched : bool
        GDAL's all-touched rule instead of the pixel-centre rule.

    Returns
    -------
    ParcelIndex
        Parcels without pixels on the grid have no runs (``npix`` 0).
    """
    from rasterio.enums import MergeAlg
    from rasterio.features import rasterize

    t0 = time.perf_counter()
    t_burn = t_runs = 0.0
    P = len(pids)
    parts: list[tuple[np.ndarray, ...]] = []
    shared: set[int] = set()
    tree = shapely.STRtree(geoms)
    for r in range(0, grid.height, TILE):
        for c in range(0, grid.width, TILE):
            h, w = min(TILE, grid.height - r), min(TILE, grid.width - c)
            x0 = grid.x0 + c * grid.res
            y0 = grid.y0 - r * grid.res
            transform = Affine(grid.res, 0, x0, 0, -grid.res, y0)
            idx = tree.query(shapely.box(x0, y0 - h * grid.res, x0 + w * grid.res, y0), predicate="intersects")
            if idx.size == 0:
                continue
            ta = time.perf_counter()
            labels = rasterize(zip(geoms[idx], idx.astype(np.int64) + 1, strict=True), out_shape=(h, w),
                               transform=transform, fill=0, all_touched=all_touched, dtype="int32")
            claims = rasterize(((g, 1) for g in geoms[idx]), out_shape=(h, w), transform=transform,
                               fill=0, all_touched=all_touched, dtype="uint8", merge_alg=MergeAlg.add)
            rr, cc = np.nonzero(claims > 1)
            if rr.size:
                # pixels claimed by several parcels (overlaps, or a pixel centre exactly on
                # a shared boundary): every parcel that can claim such a pixel (its centre
                # with the pixel-centre rule, any part of it with all_touched) is redone alone
                px = x0 + cc * grid.res
                py = y0 - rr * grid.res
                probe = (shapely.box(px, py - grid.res, px + grid.res, py) if all_touched
                         else shapely.points(px + grid.res / 2, py - grid.res / 2))
                shared.update(tree.query(probe, predicate="intersects")[1].tolist())
            tb = time.perf_counter()
            parts.append(kernels.label_runs(labels, r, c))
            t_burn += tb - ta
            t_runs += time.perf_counter() - tb
            del labels, claims
    aside = np.array(sorted(shared), np.int64)
    if aside.size:
        parts = [_drop_labels(p, aside + 1) for p in parts]
    for i in aside:            # parcels sharing pixels: each on its own, in its bounding window
        minx, miny, maxx, maxy = geoms[i].bounds
        c0 = max(0, math.floor((minx - grid.x0) / grid.res) - 1)
        r0 = max(0, math.floor((grid.y0 - maxy) / grid.res) - 1)
        c1 = min(grid.width, math.ceil((maxx - grid.x0) / grid.res) + 1)
        r1 = min(grid.height, math.ceil((grid.y0 - miny) / grid.res) + 1)
        if c1 <= c0 or r1 <= r0:
            continue
        labels = rasterize([(geoms[i], int(i) + 1)], out_shape=(r1 - r0, c1 - c0),
                           transform=Affine(grid.res, 0, grid.x0 + c0 * grid.res, 0, -grid.res,
                                            grid.y0 - r0 * grid.res),
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
    idx.timings = {"rasterize_s": round(t_burn, 3), "runs_s": round(t_runs, 3),
                   "shared_parcels": int(aside.size), "total_s": idx.seconds}
    log.info("rasterized %d parcels on EPSG:%d %g m (%d x %d): %d runs, %d pixels, %d parcels sharing "
             "pixels rasterized on their own, %.1f s", P, grid.epsg, grid.res, grid.width, grid.height,
             row.size, int(npix.sum()), aside.size, idx.seconds)
    return idx


# --------------------------------------------------------------------------- PostGIS
def load_parcels(conn, cfg: AoiConfig, epsg: int) -> tuple[np.ndarray, np.ndarray]:
    """(pids, shapely geometries in ``epsg``) of the AOI's non-empty parcels, by pid.

    Raises
    ------
    LookupError
        If the AOI has no parcel table.
    """
    row = conn.execute(q("aoi_get", schema=cfg.schema), {"name": cfg.name}).fetchone()
    if row is None or not row[1]:
        raise LookupError(f"AOI {cfg.name!r} has no parcels: run import-parcels first")
    cur = conn.execute(q("parcels_in_epsg", schema=cfg.schema, parcels=row[1]), {"epsg": epsg})
    rows = cur.fetchall()
    pids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    geoms = shapely.from_wkb([r[1] for r in rows]) if rows else np.empty(0, object)
    return pids, np.asarray(geoms)


def parcels_version(conn, cfg: AoiConfig) -> str:
    row = conn.execute(q("aoi_get", schema=cfg.schema), {"name": cfg.name}).fetchone()
    if row is None:
        raise LookupError(f"AOI {cfg.name!r} has no row in {cfg.schema}.aois")
    return row[3] or ""


def aoi_index(conn, cfg: AoiConfig, lattice: tuple[int, float, float, float]) -> ParcelIndex:
    """Rasterize all AOI parcels on a lattice (grid = parcel extent snapped to it)."""
    epsg, res, ox, oy = lattice
    pids, geoms = load_parcels(conn, cfg, epsg)
    if pids.size == 0:
        raise LookupError(f"AOI {cfg.name!r} has no non-empty parcels")
    bounds = tuple(shapely.total_bounds(geoms))
    grid = lattice_grid(epsg, res, bounds, (ox, oy))
    idx = build_index(pids, geoms, grid, all_touched=cfg.all_touched)
    idx.parcels_version = parcels_version(conn, cfg)
    return idx


def store_index(conn, cfg: AoiConfig, idx: ParcelIndex) -> int:
    """Replace the stored index of the same lattice (one transaction with the caller)."""
    epsg, res, ox, oy = idx.grid.lattice
    g = idx.grid
    grid_id = conn.execute(q("grid_upsert", schema=cfg.schema), {
        "epsg": epsg, "res": res, "ox": ox, "oy": oy, "all_touched": idx.all_touched,
        "version": idx.parcels_version, "x0": g.x0, "y0": g.y0, "width": g.width, "height": g.height,
        "n_parcels": int(idx.pids.size), "n_runs": idx.n_runs, "seconds": idx.seconds}).fetchone()[0]
    conn.execute(q("grid_chunks_delete", schema=cfg.schema), {"grid_id": grid_id})
    data = idx.to_bytes()
    with conn.cursor() as cur:
        cur.executemany(q("grid_chunk_insert", schema=cfg.schema),
                        [{"grid_id": grid_id, "seq": i, "data": data[o:o + CHUNK_BYTES]}
                         for i, o in enumerate(range(0, len(data), CHUNK_BYTES))])
    return grid_id


_CACHE: OrderedDict[tuple, ParcelIndex] = OrderedDict()
_CACHE_SIZE = 4


def _cached(key: tuple, make) -> ParcelIndex:
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    idx = make()
    _CACHE[key] = idx
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return idx


def index_for_grid(url: str, cfg: AoiConfig, image: Grid, footprint: bytes | None = None,
                   obsid: int | None = None) -> ParcelIndex:
    """The parcel index for an image grid.

    1. The stored index of the image's lattice (every Sentinel-2 scene; any lattice seen
       on two scenes, below), kept in a small per-process cache.
    2. Otherwise (Sentinel-1 CARD "Auto UTM" grids) only the parcels that intersect the
       scene are loaded (a spatial query on the image extent and the catalogue
       ``footprint``, EPSG:4326 WKB) and rasterized on the image grid. The lattice is
       counted per scene (``obsid``, ``grid_sightings``): from its second scene on it is
       built for all AOI parcels and stored like an S2 lattice, so repeating grids are
       rasterized once.
    """
    lattice = image.lattice
    key = {"epsg": lattice[0], "res": lattice[1], "ox": lattice[2], "oy": lattice[3],
           "all_touched": cfg.all_touched}
    with transaction(url) as conn:
        version = parcels_version(conn, cfg)
        row = conn.execute(q("grid_get", schema=cfg.schema), {**key, "version": version}).fetchone()
    scene_key = (url, cfg.schema, "scene", lattice, cfg.all_touched, version, image.x0, image.y0,
                 image.width, image.height, hash(footprint) if footprint else None)
    if row is None and scene_key in _CACHE:              # the scene's next band
        _CACHE.move_to_end(scene_key)
        return _CACHE[scene_key]
    if row is None:
        with transaction(url) as conn:
            seen = conn.execute(q("grid_sighting", schema=cfg.schema), {**key, "obsid": obsid}
                                ).fetchone()[0]  # type: ignore[index]
            if seen >= 2:
                log.info("lattice %s seen on %d scenes: building its stored parcel index", lattice, seen)
                idx = aoi_index(conn, cfg, lattice)
                store_index(conn, cfg, idx)
                row = conn.execute(q("grid_get", schema=cfg.schema), {**key, "version": version}).fetchone()
    if row is not None:
        grid_id, x0, y0, width, height, created = row
        grid = Grid(epsg=lattice[0], res=lattice[1], x0=x0, y0=y0, width=width, height=height)

        def load() -> ParcelIndex:
            with transaction(url) as conn:
                chunks = conn.execute(q("grid_chunks_get", schema=cfg.schema), {"grid_id": grid_id})
                data = b"".join(bytes(r[0]) for r in chunks)
            idx = ParcelIndex.from_bytes(data, grid, cfg.all_touched, version)
            idx.source = f"stored:{grid_id}"
            return idx

        return _cached((url, cfg.schema, "stored", grid_id, created), load)

    def build() -> ParcelIndex:
        with transaction(url) as conn:
            pids, geoms = load_parcels_in(conn, cfg, image, footprint)
        if pids.size == 0:
            idx = build_index(pids, geoms, image, all_touched=cfg.all_touched)
        else:
            minx, miny, maxx, maxy = (float(v) for v in shapely.total_bounds(geoms))
            grid = lattice_grid(image.epsg, image.res, (minx, miny, maxx, maxy), (lattice[2], lattice[3]))
            idx = build_index(pids, geoms, grid, all_touched=cfg.all_touched)
        idx.parcels_version = version
        idx.source = "scene"
        log.info("parcel index for a scene grid on lattice %s: %d parcels intersect the scene, %.2f s",
                 lattice, pids.size, idx.seconds)
        return idx

    return _cached(scene_key, build)


def load_parcels_in(conn, cfg: AoiConfig, image: Grid, footprint: bytes | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(pids, shapely geometries in the image's EPSG) of the parcels intersecting a scene.

    Parameters
    ----------
    image : Grid
        The scene's image grid (its extent bounds the query).
    footprint : bytes, optional
        The catalogue footprint, EPSG:4326 WKB.
    """
    row = conn.execute(q("aoi_get", schema=cfg.schema), {"name": cfg.name}).fetchone()
    if row is None or not row[1]:
        raise LookupError(f"AOI {cfg.name!r} has no parcels: run import-parcels first")
    minx, maxy = image.x0, image.y0
    maxx, miny = image.x0 + image.width * image.res, image.y0 - image.height * image.res
    rows = conn.execute(q("parcels_in_area", schema=cfg.schema, parcels=row[1]), {
        "minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy, "epsg": image.epsg, "srid": row[2],
        "step": max(maxx - minx, maxy - miny) / 32.0 + 1e-9, "footprint": footprint}).fetchall()
    pids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    geoms = shapely.from_wkb([r[1] for r in rows]) if rows else np.empty(0, object)
    return pids, np.asarray(geoms)


def rasterize_aoi(url: str, cfg: AoiConfig, epsgs: list[int] | None = None,
                  resolutions: list[float] | None = None) -> list[dict]:
    """Build and store the parcel indexes of the AOI's Sentinel-2 lattices.

    Lattices: every UTM EPSG of the AOI's S2 scenes in ``dias_catalogue`` (or ``epsgs``)
    times the resolutions of the configured S2 stages (10 m bands, 20 m bands and SCL).
    An index that is stored for the current parcel version is kept.

    Returns
    -------
    list of dict
        One entry per lattice: epsg, resolution, parcels, runs, seconds, action
        (``built`` or ``current``).
    """
    res_set = set(resolutions or [])
    if not res_set:
        if cfg.bands.get("s2_10m") and "s2" in cfg.cards:
            res_set.add(10.0)
        if (cfg.bands.get("s2_20m") or cfg.bands.get("scl")) and "s2" in cfg.cards:
            res_set.add(20.0)
    out = []
    with transaction(url) as conn:
        version = parcels_version(conn, cfg)
        if not epsgs:
            epsgs = [r[0] for r in conn.execute(q("catalogue_s2_epsgs", schema=cfg.schema), {"aoi": cfg.name})]
    for epsg in sorted(set(epsgs)):
        for res in sorted(res_set):
            lattice = (epsg, float(res), 0.0, 0.0)
            with transaction(url) as conn:
                row = conn.execute(q("grid_get", schema=cfg.schema), {
                    "epsg": epsg, "res": float(res), "ox": 0.0, "oy": 0.0,
                    "all_touched": cfg.all_touched, "version": version}).fetchone()
                if row is not None:
                    out.append({"epsg": epsg, "resolution": res, "action": "current"})
                    continue
                idx = aoi_index(conn, cfg, lattice)
                store_index(conn, cfg, idx)
            out.append({"epsg": epsg, "resolution": res, "action": "built", "parcels": int(idx.pids.size),
                        "parcels_with_pixels": int((idx.npix > 0).sum()), "runs": idx.n_runs,
                        "seconds": idx.seconds})
            log.info("stored parcel index EPSG:%d %g m for %s", epsg, res, cfg.name)
    return out
