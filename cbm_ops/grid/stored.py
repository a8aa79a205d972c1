"""Stored parcel indexes: one per UTM lattice of an AOI, in PostGIS, for every worker.

A *lattice* is (EPSG, resolution, origin modulo resolution). Every Sentinel-2 tile of a
UTM zone lies on the lattice (EPSG, 10|20|60 m, origin 0): one index per lattice serves
every S2 scene of the AOI. Indexes are built once per (AOI, EPSG, resolution, lattice)
by :func:`rasterize_aoi`, stored in ``parcel_grids`` (compressed, chunked) where every
worker reads them, and keyed on the parcel set's version so a changed parcel set
invalidates them. Scenes whose grid matches no stored lattice (S1 CARD "Auto UTM" grids)
are rasterized for the scene and kept in a small per-process cache
(:func:`index_for_grid`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np
import shapely

from ..config import AoiConfig
from ..db import q, transaction
from .index import Grid, ParcelIndex, build_index, lattice_grid

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 2**20      # bytea chunk size in parcel_grid_chunks


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
