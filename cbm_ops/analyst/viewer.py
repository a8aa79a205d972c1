"""Parcel viewer queries: vector tiles of an AOI's parcels with their colour attributes.

The viewer page (``web/viewer``, served by ``plugins/cbm_api/viewer.py``) draws the parcels of an
AOI from Mapbox Vector Tiles made by PostGIS (``ST_AsMVT``), one statement per tile
(``include/sql/viewer_tile.sql``), and colours them client-side by one of the attributes every
tile carries (:data:`ATTRIBUTES`), so switching the colour needs no new tiles.

The observation attributes of a year (canonical S2 observations, cloud-free dates, last
cloud-free date) come from a per-parcel summary of the AOI-year (:func:`refresh_summary`: one
pass over the year's sigs and hists into ``viewer_parcel_summary``), so a tile costs one key
probe per parcel whatever the number of scenes. Until an AOI-year has a summary, tiles compute
them live (``include/sql/viewer_tile_live.sql``: a key probe per parcel and scene, slow for
large tiles of a full year; measured in ``make bench``).

Tiles are kept in a :class:`TileCache` keyed by AOI, results version (:func:`results_version`),
summary state, year and z/x/y: a new scene stage, a requeue, a parcel re-import or a refreshed
summary changes the key and the tiles' URLs.

No Airflow imports: the API router, notebooks and ``make bench`` (:func:`tile_latency`) use
it alike. Every statement is a file of ``include/sql`` with bound values; the only
identifiers are the AOI's schema, parcel table and crop column, from the validated AOI file.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import math
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..config import STAGES, AoiConfig
from ..db import q, transaction

# name -> (label, kind); every tile carries all of them (see include/sql/viewer_tile.sql)
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "crop": ("crop (parcels.crop_column)", "category"),
    "s2_obs": ("canonical Sentinel-2 observations in the year", "count"),
    "s2_clear": ("cloud-free Sentinel-2 dates in the year (SCL)", "count"),
    "last_clear": ("last cloud-free Sentinel-2 date (day of the year)", "day"),
    "quarantined": ("quarantined scenes of the year touching the parcel", "count"),
}
MAX_ZOOM = 22
CROP_CATEGORIES = 12                       # legend colours; the rest is "other"
WEB_MERCATOR_MAX_LAT = 85.0511287798066


class TooCoarse(ValueError):
    """A tile below the AOI's minimum parcel zoom (too many parcels for one tile)."""


# ----------------------------------------------------------------- tile arithmetic
def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """Slippy-map tile (x, y) at zoom ``z`` holding a point (EPSG:4326 degrees).

    The OSM/XYZ scheme (x from 180 W eastwards, y from 85.05 N southwards), as
    ``ST_TileEnvelope`` and MapLibre use.
    """
    lat = max(-WEB_MERCATOR_MAX_LAT, min(WEB_MERCATOR_MAX_LAT, lat))
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(r)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def tiles_covering(bounds: Sequence[float], z: int) -> list[tuple[int, int]]:
    """The tiles (x, y) at zoom ``z`` that cover ``bounds`` = (west, south, east, north) degrees."""
    x0, y0 = lonlat_to_tile(bounds[0], bounds[3], z)
    x1, y1 = lonlat_to_tile(bounds[2], bounds[1], z)
    return [(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def year_window(year: int) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime(year, 1, 1), dt.datetime(year + 1, 1, 1)


# ----------------------------------------------------------------- queries
def _crop(cfg: AoiConfig) -> tuple[str, bool]:
    """Crop column identifier for the SQL templates (``ogc_fid`` as a harmless stand-in without one)."""
    return (cfg.parcels.crop_column, True) if cfg.parcels.crop_column else ("ogc_fid", False)


def parcel_srid(conn, cfg: AoiConfig) -> int:
    """SRID of the parcel table's geometry column."""
    return int(conn.execute(q("api_parcel_srid"), {"schema": cfg.schema, "table": cfg.parcels.table}).fetchone()[0])


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def results_version(conn, cfg: AoiConfig) -> str:
    """Short hash of what the tiles depend on: parcel set version and import time, and the
    count and last change of the scene stages (any claim, completion, failure, requeue or
    quarantine changes it). Two small aggregates (``include/sql/viewer_version.sql``)."""
    row = conn.execute(q("viewer_version", schema=cfg.schema), {"name": cfg.name}).fetchone()
    return short_hash("|".join("" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v))
                               for v in row))


def aoi_info(conn, cfg: AoiConfig) -> dict[str, Any]:
    """What the page needs to open an AOI.

    Returns
    -------
    dict
        ``name``, ``description``, ``srid``, ``bounds`` [west, south, east, north] (EPSG:4326
        degrees, the parcel extent), ``parcels`` (count), ``min_zoom`` (tiles below it are
        refused; 0 for AOIs of at most ``viewer.small_aoi_parcels`` parcels), ``crop_column``,
        ``crops`` (the :data:`CROP_CATEGORIES` most frequent values with their counts),
        ``years`` ({year: {card: {"scenes", "extracted"}}}), ``year`` (the default: the
        latest year with an extracted S2 scene, else with any scene), ``bands``
        ({card: stored band codes}), ``attributes``, ``background`` (tile template,
        attribution, max zoom; None without one), ``version`` (:func:`results_version`),
        ``summaries`` (:func:`summary_state`).
    """
    srid = parcel_srid(conn, cfg)
    x0, y0, x1, y1, n = conn.execute(q("viewer_aoi", schema=cfg.schema, parcels=cfg.parcels.table),
                                     {"srid": srid}).fetchone()
    crops: list[dict[str, Any]] = []
    crop, has_crop = _crop(cfg)
    if has_crop:
        crops = [{"value": v, "parcels": c} for v, c in conn.execute(
            q("viewer_crops", schema=cfg.schema, parcels=cfg.parcels.table, crop=crop), {"limit": CROP_CATEGORIES})]
    years: dict[int, dict[str, dict[str, int]]] = {}
    for year, card, scenes, extracted in conn.execute(q("viewer_years", schema=cfg.schema)):
        years.setdefault(year, {})[card] = {"scenes": scenes, "extracted": extracted}
    s2 = [y for y, c in years.items() if c.get("s2", {}).get("extracted")]
    default = max(s2) if s2 else (max(years) if years else dt.date.today().year)
    bands: dict[str, list[str]] = {}
    for stage in cfg.stages:
        card, kind = STAGES[stage]
        if kind == "stats":
            bands.setdefault(card, []).extend(cfg.stored_bands(stage))
    v = cfg.viewer
    return {
        "name": cfg.name, "description": cfg.description, "srid": srid,
        "bounds": [x0, y0, x1, y1] if x0 is not None else None, "parcels": n,
        "min_zoom": 0 if n <= v.small_aoi_parcels else v.min_zoom,
        "crop_column": cfg.parcels.crop_column, "crops": crops,
        "years": years, "year": default, "bands": bands,
        "attributes": {k: {"label": lab, "kind": kind} for k, (lab, kind) in ATTRIBUTES.items()},
        "background": ({"tiles": v.background_tiles, "attribution": v.background_attribution,
                        "max_zoom": v.background_max_zoom} if v.background_tiles else None),
        "version": results_version(conn, cfg),
        "summaries": summary_state(conn, cfg),
    }


def parcel_extent(conn, cfg: AoiConfig, srid: int) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of the parcel set in EPSG:4326 degrees, None without parcels."""
    x0, y0, x1, y1, _n = conn.execute(q("viewer_aoi", schema=cfg.schema, parcels=cfg.parcels.table),
                                      {"srid": srid}).fetchone()
    return None if x0 is None else (x0, y0, x1, y1)


def parcel_tile(conn, cfg: AoiConfig, z: int, x: int, y: int, year: int, srid: int | None = None,
                extent: Sequence[float] | None = None, *, live: bool = False) -> bytes:
    """One Mapbox Vector Tile (layer ``parcels``) of the AOI's parcels, ``ST_AsMVT`` of PostGIS.

    Parameters
    ----------
    z, x, y : int
        Web-mercator tile (XYZ scheme, as ``ST_TileEnvelope``); extent 4096, buffer 64.
    year : int
        Calendar year of the observation attributes (UTC sensing time of the datatake).
    srid : int, optional
        SRID of the parcel table (looked up when not given).
    extent : (west, south, east, north), optional
        The parcel extent in EPSG:4326 (:func:`parcel_extent`, looked up when not given);
        only the part of the tile within it is transformed to the parcel CRS.
    live : bool
        Compute the observation attributes from sigs and hists (``viewer_tile_live.sql``)
        instead of reading the AOI-year's summary (:func:`refresh_summary`), which must exist
        (:func:`summary_state`); parcels missing from the summary have 0 observations.

    Returns
    -------
    bytes
        The tile (protobuf, not compressed; empty when no parcel is in it). Every feature
        has ``pid``, ``crop`` (text or absent), ``s2_obs``, ``s2_clear``, ``last_clear``
        (day of the year or absent), ``quarantined``; the definitions are in
        ``include/sql/viewer_tile.sql`` and :data:`ATTRIBUTES`.

    Raises
    ------
    ValueError
        z, x or y outside the tile pyramid.
    """
    if not (0 <= z <= MAX_ZOOM and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise ValueError(f"tile {z}/{x}/{y} is outside the tile pyramid (zoom 0-{MAX_ZOOM})")
    if srid is None:
        srid = parcel_srid(conn, cfg)
    if extent is None:
        extent = parcel_extent(conn, cfg, srid)
        if extent is None:
            return b""
    pad = max(extent[2] - extent[0], extent[3] - extent[1]) * 0.01 + 1e-4
    west, south = max(extent[0] - pad, -180.0), max(extent[1] - pad, -90.0)
    east, north = min(extent[2] + pad, 180.0), min(extent[3] + pad, 90.0)
    start, end = year_window(year)
    crop, has_crop = _crop(cfg)
    row = conn.execute(q("viewer_tile_live" if live else "viewer_tile", schema=cfg.schema,
                         parcels=cfg.parcels.table, crop=crop),
                       {"z": z, "x": x, "y": y, "srid": srid, "start": start, "end": end, "has_crop": has_crop,
                        "west": west, "south": south, "east": east, "north": north, "year": year}).fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""


# ----------------------------------------------------------------- per-parcel summary of a year
SUMMARY_TIMEOUT = "60min"         # statement timeout of a refresh (one pass over a year of sigs/hists)
SUMMARY_WORK_MEM = "256MB"


def summary_state(conn, cfg: AoiConfig) -> dict[int, dict[str, Any]]:
    """The AOI's refreshed summaries: ``{year: {"version", "refreshed_at", "parcels", "seconds"}}``
    (empty when none was ever refreshed; ``version`` is the :func:`results_version` it reflects)."""
    exists = conn.execute(q("viewer_summary_exists"), {"name": f'"{cfg.schema}".viewer_summary_state'}).fetchone()[0]
    if not exists:
        return {}
    return {year: {"version": v, "refreshed_at": at.isoformat(), "parcels": n, "seconds": round(float(sec), 2)}
            for year, v, at, n, sec in conn.execute(q("viewer_summary_state", schema=cfg.schema))}


def refresh_summary(url: str, cfg: AoiConfig, year: int) -> dict[str, Any] | None:
    """Recompute the viewer's per-parcel summary of ``year`` (``viewer_parcel_summary``).

    One transaction: the summary tables are created if missing, the year's rows replaced by
    one pass over its S2 scenes' sigs and hists (``include/sql/viewer_summary_refresh.sql``:
    canonical observations per parcel and datatake, the cloud-free ones, the last cloud-free
    sensing time), and the results version it reflects recorded. Readers keep seeing the
    previous summary until it commits. At most one refresh per AOI-year runs at a time (an
    advisory lock): a second caller returns None at once.

    Returns
    -------
    dict or None
        ``year``, ``version``, ``parcels`` (with at least one observation), ``seconds``; None
        when another refresh of the AOI-year was running.

    Raises
    ------
    psycopg.errors.InsufficientPrivilege
        The database role may not create or write the tables (a read-only API role): tiles
        then compute the attributes live.
    """
    start, end = year_window(year)
    t0 = time.perf_counter()
    with transaction(url) as conn:
        version = results_version(conn, cfg)          # before reading: a change during the pass is seen later
        locked = conn.execute(q("viewer_summary_lock"), {"key": f"cbm-viewer-summary:{cfg.schema}:{year}"}
                              ).fetchone()
        if not (locked and locked[0]):
            return None
        conn.execute(q("viewer_summary_session"), {"timeout": SUMMARY_TIMEOUT, "work_mem": SUMMARY_WORK_MEM})
        conn.execute(q("viewer_summary_tables", schema=cfg.schema))
        conn.execute(q("viewer_summary_delete", schema=cfg.schema), {"year": year})
        conn.execute(q("viewer_summary_refresh", schema=cfg.schema), {"year": year, "start": start, "end": end})
        conn.execute(q("viewer_summary_state_set", schema=cfg.schema), {"year": year, "version": version})
        n = conn.execute(q("viewer_summary_state", schema=cfg.schema)).fetchall()
    parcels = next((r[3] for r in n if r[0] == year), 0)
    return {"year": year, "version": version, "parcels": parcels, "seconds": round(time.perf_counter() - t0, 2)}


# ----------------------------------------------------------------- cache
class TileCache:
    """Least-recently-used tiles of this process, bounded in bytes (thread-safe).

    Keys are tuples that hold the results version, so tiles of an older version are never
    served: they age out as new ones come in.
    """

    def __init__(self, max_bytes: int = 64 * 2**20):
        self.max_bytes = max_bytes
        self._data: collections.OrderedDict[tuple, bytes] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            v = self._data.get(key)
            if v is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return v

    def put(self, key: tuple, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._data[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self._bytes -= len(dropped)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"tiles": len(self._data), "bytes": self._bytes, "hits": self.hits, "misses": self.misses}


# ----------------------------------------------------------------- benchmark
def tile_latency(url: str, cfg: AoiConfig, tiles: Sequence[tuple[int, int, int]], year: int, *,
                 live: bool = False) -> dict[str, Any]:
    """Wall time of :func:`parcel_tile` per tile as the API runs it on a cache miss.

    Each call takes a pooled connection, makes the transaction read-only with the API's
    statement timeout and runs the tile statement. For ``make bench``.

    Parameters
    ----------
    tiles : sequence of (z, x, y)
    live : bool
        Time the live attributes (no summary) instead of the summary's.

    Returns
    -------
    dict
        ``tiles``, ``p50_ms``, ``p95_ms``, ``max_ms``, ``bytes_median``, ``features_max``
        (None: counted by the caller if needed).
    """
    from .queries import read_only

    with transaction(url) as conn:
        srid = parcel_srid(conn, cfg)
        extent = parcel_extent(conn, cfg, srid)
    times, sizes = [], []
    for z, x, y in tiles:
        t0 = time.perf_counter()
        with transaction(url) as conn:
            read_only(conn)
            data = parcel_tile(conn, cfg, z, x, y, year, srid, extent, live=live)
        times.append((time.perf_counter() - t0) * 1000)
        sizes.append(len(data))
    if not times:
        return {"tiles": 0, "p50_ms": None, "p95_ms": None, "max_ms": None, "bytes_median": None}
    times.sort()
    p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
    return {"tiles": len(times), "p50_ms": round(statistics.median(times), 2), "p95_ms": round(p95, 2),
            "max_ms": round(times[-1], 2), "bytes_median": int(statistics.median(sizes))}


def outline(conn, cfg: AoiConfig) -> dict[str, Any] | None:
    """The AOI outline (``aois`` row) as a GeoJSON geometry in EPSG:4326, or None."""
    row = conn.execute(q("aoi_get", schema=cfg.schema), {"name": cfg.name}).fetchone()
    if row is None or row[0] is None:
        return None
    import shapely

    geom = shapely.from_wkb(bytes(row[0]))
    return json.loads(shapely.to_geojson(shapely.set_precision(geom, 1e-6)))
