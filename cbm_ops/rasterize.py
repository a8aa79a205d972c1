"""UTM rasterization: parcels on an image grid, as a run-length parcel index.

Membership is GDAL's rule on the image's own grid, for every parcel rasterized on its own:
the pixel-centre rule (``all_touched=False``, configurable), exactly what rasterstats does
per geometry (``rasterio.features.rasterize``). :mod:`cbm_ops.scanline` reproduces GDAL's
scanline fill and all-touched line walk in Numba, straight from shapely's coordinate
arrays to the runs, in parallel over parcels; overlapping parcels and pixel centres on a
common boundary need no special treatment (docs/rasterization.md). The reference
rasterized each parcel off the image grid and got 4-18 % of the pixels wrong.

A *lattice* is (EPSG, resolution, origin modulo resolution). Every Sentinel-2 tile of a
UTM zone lies on the lattice (EPSG, 10|20|60 m, origin 0): one index per lattice serves
every S2 scene of the AOI. Indexes are built once per (AOI, EPSG, resolution, lattice)
by :func:`rasterize_aoi`, stored in ``parcel_grids`` (compressed, chunked) where every
worker reads them, and keyed on the parcel set's version so a changed parcel set
invalidates them. Scenes whose grid matches no stored lattice (S1 CARD "Auto UTM" grids)
are rasterized for the scene and kept in a small per-process cache.
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

from . import kernels, scanline
from .config import AoiConfig
from .db import q, transaction

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 2**20      # bytea chunk size in parcel_grid_chunks


class GridError(ValueError):
    """An image grid cannot be used with a parcel index (rotated, other CRS, off-lattice)."""


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: upper-left corner (x0, y0), pixels of ``res`` x ``res_y``
    metres (``res_y`` defaults to ``res``: square pixels)."""

    epsg: int
    res: float
    x0: float
    y0: float
    width: int
    height: int
    res_y: float = None  # type: ignore[assignment]   # None -> res (set in __post_init__)

    def __post_init__(self) -> None:
        if self.res_y is None:
            object.__setattr__(self, "res_y", self.res)

    @property
    def square(self) -> bool:
        """Square pixels (x and y sizes equal to 1e-9 relative)."""
        return math.isclose(self.res_y, self.res, rel_tol=1e-9)

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0.0, self.x0, 0.0, -self.res_y, self.y0)

    @property
    def origin_mod(self) -> tuple[float, float]:
        """(x0 mod res, y0 mod res_y) exactly (metres): the origin to build an index on."""
        return self.x0 % self.res, self.y0 % self.res_y

    @property
    def lattice(self) -> tuple[int, float, float, float]:
        """(EPSG, resolution, x0 mod res, y0 mod res), rounded to the millimetre.

        Raises
        ------
        GridError
            If the pixels are not square (stored lattices are square).
        """
        if not self.square:
            raise GridError(f"pixels of {self.res} x {self.res_y} m are not square: no stored parcel index "
                            "lattice applies (use zonal_stats for such rasters)")
        return (self.epsg, self.res, round(self.x0 % self.res, 3) % self.res,
                round(self.y0 % self.res, 3) % self.res)

    @classmethod
    def from_raster(cls, epsg: int, transform: Affine, width: int, height: int) -> Grid:
        """The grid of a raster (rasterio transform); pixels may be non-square.

        Raises
        ------
        GridError
            If the raster is rotated or sheared, or not north-up.
        """
        a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
        if b != 0 or d != 0 or not a > 0 or not e < 0:
            raise GridError(f"image grid is not north-up (rotated, sheared or flipped): {tuple(transform)[:6]}")
        return cls(epsg=epsg, res=float(a), x0=float(c), y0=float(f), width=int(width), height=int(height),
                   res_y=float(-e))

    def offset_in(self, other: Grid) -> tuple[int, int]:
        """(row, col) of this grid's first pixel in ``other`` (same lattice).

        Raises
        ------
        GridError
            If the grids are not on the same lattice.
        """
        if (self.epsg != other.epsg or not math.isclose(self.res, other.res, rel_tol=1e-9)
                or not math.isclose(self.res_y, other.res_y, rel_tol=1e-9)):
            raise GridError(f"grid EPSG:{self.epsg} {self.res} x {self.res_y} m does not match "
                            f"EPSG:{other.epsg} {other.res} x {other.res_y} m")
        col = (self.x0 - other.x0) / self.res
        row = (other.y0 - self.y0) / self.res_y
        # grids whose origins differ by up to a millimetre (the rounding of lattice keys)
        # share an index; farther is another lattice
        if abs(col - round(col)) * self.res > LATTICE_TOLERANCE_M or \
                abs(row - round(row)) * self.res_y > LATTICE_TOLERANCE_M:
            raise GridError(f"grid origin ({self.x0}, {self.y0}) is off the lattice of "
                            f"({other.x0}, {other.y0}) at {self.res} x {self.res_y} m")
        return int(round(row)), int(round(col))


# Origins closer than this (metres) are one lattice: lattice keys are rounded to 1 mm.
LATTICE_TOLERANCE_M = 1.1e-3


def lattice_grid(epsg: int, res: float, bounds: tuple[float, float, float, float],
                 origin: tuple[float, float] = (0.0, 0.0)) -> Grid:
    """Smallest grid on the lattice (origin + k * res) that covers ``bounds`` (square pixels).

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
            self._centroids = (g.x0 + cx * g.res, g.y0 - cy * g.res_y)
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


def _flat_parts(geom) -> list:
    """Polygons, lines and points of a (nested) geometry collection."""
    out = []
    for part in shapely.get_parts(geom):
        if shapely.get_type_id(part) == 7:          # GeometryCollection
            out.extend(_flat_parts(part))
        elif not part.is_empty:
            out.append(part)
    return out


def _window_runs(geom, grid: Grid, all_touched: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of a non-polygonal geometry with rasterio on its window of ``grid``."""
    from rasterio.features import rasterize

    minx, miny, maxx, maxy = geom.bounds
    c0 = max(0, math.floor((minx - grid.x0) / grid.res) - 1)
    r0 = max(0, math.floor((grid.y0 - maxy) / grid.res_y) - 1)
    c1 = min(grid.width, math.ceil((maxx - grid.x0) / grid.res) + 1)
    r1 = min(grid.height, math.ceil((grid.y0 - miny) / grid.res_y) + 1)
    if c1 <= c0 or r1 <= r0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    labels = rasterize([(geom, 1)], out_shape=(r1 - r0, c1 - c0),
                       transform=Affine(grid.res, 0, grid.x0 + c0 * grid.res, 0, -grid.res_y,
                                        grid.y0 - r0 * grid.res_y),
                       fill=0, all_touched=all_touched, dtype="int32")
    _, row, a, b = kernels.label_runs(labels, r0, c0)
    return row.astype(np.int64), a.astype(np.int64), b.astype(np.int64)


def build_index(pids: np.ndarray, geoms: np.ndarray, grid: Grid, *, all_touched: bool = False
                ) -> ParcelIndex:
    """Rasterize parcels on ``grid``, each on its own, as a run-length index.

    Every parcel gets exactly the pixels GDAL (``rasterio.features.rasterize`` of that
    parcel alone on ``grid``) gives it, overlaps and shared boundaries included; see
    :func:`cbm_ops.scanline.polygon_runs` and docs/rasterization.md.

    Parameters
    ----------
    pids : int ndarray, shape (P,)
        Parcel ids.
    geoms : ndarray of shapely geometries, shape (P,)
        Parcels in the grid's CRS (metres): Polygons and MultiPolygons (exact Numba
        scanline). The polygons of a GeometryCollection take the same path; its lines
        and points (and bare lines or points) are burnt with rasterio on their window.
    grid : Grid
        Any north-up grid, square or non-square pixels.
    all_touched : bool
        GDAL's all-touched rule instead of the pixel-centre rule.

    Returns
    -------
    ParcelIndex
        Runs sorted by parcel, then row and column; runs of one parcel are disjoint.
        Parcels without pixels on the grid (outside it, empty, None) have no runs
        (``npix`` 0).
    """
    t0 = time.perf_counter()
    geoms = np.asarray(geoms, dtype=object)
    P = len(pids)
    types = shapely.get_type_id(geoms)
    extra: dict[int, list] = {}
    odd = np.flatnonzero((types >= 0) & (types != 3) & (types != 6))
    if odd.size:
        geoms = geoms.copy()
        for i in odd:
            parts = _flat_parts(geoms[i]) if types[i] == 7 else [geoms[i]]
            polys = [q for p in parts if shapely.get_type_id(p) in (3, 6) for q in shapely.get_parts(p)]
            rest = [p for p in parts if shapely.get_type_id(p) not in (3, 6)]
            geoms[i] = shapely.multipolygons(polys) if polys else None
            if rest:
                extra[int(i)] = rest
    ta = time.perf_counter()
    run_ptr, row, a, b, npix, _ = scanline.polygon_runs(geoms, grid.x0, grid.y0, grid.res, grid.res_y,
                                                        grid.width, grid.height, all_touched=all_touched)
    tb = time.perf_counter()
    if extra:
        run_ptr, row, a, b, npix = _add_runs(run_ptr, row, a, b, extra, grid, all_touched)
    idx = ParcelIndex(grid=grid, pids=np.asarray(pids, np.int32), run_ptr=run_ptr, run_row=row,
                      run_c0=a, run_c1=b, npix=npix, all_touched=all_touched)
    idx.seconds = round(time.perf_counter() - t0, 3)
    idx.timings = {"rasterize_s": round(tb - ta, 3), "runs_s": 0.0, "shared_parcels": 0,
                   "other_geometries": len(extra), "total_s": idx.seconds}
    log.info("rasterized %d parcels on EPSG:%d %g x %g m (%d x %d): %d runs, %d pixels, %.2f s", P, grid.epsg,
             grid.res, grid.res_y, grid.width, grid.height, row.size, int(npix.sum()), idx.seconds)
    return idx


def _add_runs(run_ptr, row, a, b, extra: dict[int, list], grid: Grid, all_touched: bool):
    """Unite the runs of the lines/points in ``extra`` with the parcels' scanline runs."""
    G = run_ptr.size - 1
    per: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for i, rest in extra.items():
        s, e = run_ptr[i], run_ptr[i + 1]
        rr, aa, bb = [row[s:e].astype(np.int64)], [a[s:e].astype(np.int64)], [b[s:e].astype(np.int64)]
        for g in rest:
            r2, a2, b2 = _window_runs(g, grid, all_touched)
            rr.append(r2)
            aa.append(a2)
            bb.append(b2)
        r3, a3, b3 = np.concatenate(rr), np.concatenate(aa), np.concatenate(bb)
        m = scanline.merge_runs(r3, a3, b3, grid.width)
        per[i] = (r3[:m], a3[:m], b3[:m])
    counts = np.diff(run_ptr)
    for i, (r3, _, _) in per.items():
        counts[i] = r3.size
    new_ptr = np.zeros(G + 1, np.int64)
    np.cumsum(counts, out=new_ptr[1:])
    out = [np.empty(int(new_ptr[-1]), np.int32) for _ in range(3)]
    keep = np.ones(G, bool)
    keep[list(per)] = False
    src = np.repeat(keep, np.diff(run_ptr))                 # runs kept as they are
    dst = np.repeat(keep, counts)
    for o, arr in zip(out, (row, a, b), strict=True):
        o[dst] = arr[src]
    for i, trip in per.items():
        for o, arr in zip(out, trip, strict=True):
            o[new_ptr[i]:new_ptr[i + 1]] = arr
    npix = np.zeros(G, np.int64)
    np.add.at(npix, np.repeat(np.arange(G), counts), (out[2] - out[1]).astype(np.int64))
    return new_ptr, out[0], out[1], out[2], npix


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


def aoi_index(conn, cfg: AoiConfig, lattice: tuple[int, float, float, float],
              origin: tuple[float, float] | None = None) -> ParcelIndex:
    """Rasterize all AOI parcels on a lattice (grid = parcel extent snapped to it).

    ``origin``: the exact origin modulo the resolution (metres) of the image that asked for
    it; default the lattice key's (rounded to the millimetre).
    """
    epsg, res, ox, oy = lattice
    if origin is not None:
        ox, oy = origin
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
_SCENE_OF: dict[tuple, int | None] = {}      # scene index key -> the scene (obsid) it was last used for
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
    if row is None and scene_key in _CACHE and _SCENE_OF.get(scene_key) == obsid:   # the scene's next band
        _CACHE.move_to_end(scene_key)
        return _CACHE[scene_key]
    if row is None:
        _SCENE_OF[scene_key] = obsid
        with transaction(url) as conn:
            seen = conn.execute(q("grid_sighting", schema=cfg.schema), {**key, "obsid": obsid}
                                ).fetchone()[0]  # type: ignore[index]
            if seen >= 2:
                log.info("lattice %s seen on %d scenes: building its stored parcel index", lattice, seen)
                idx = aoi_index(conn, cfg, lattice, image.origin_mod)
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
            grid = lattice_grid(image.epsg, image.res, (minx, miny, maxx, maxy), image.origin_mod)
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
    maxx, miny = image.x0 + image.width * image.res, image.y0 - image.height * image.res_y
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
