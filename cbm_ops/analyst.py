"""Parcel queries for analysts: the library behind the parcel API, notebooks and the bench.

Every function takes an open psycopg connection and the AOI configuration and returns
plain Python data in the shape of the JRC RESTful API (ec-jrc/cbm ``api/main.py``): a dict
of equal-length column lists, ``{"ogc_fid": [575541], "cropname": [...], ...}``, which
``pandas.DataFrame(result)`` or ``pd.read_json`` turn into a table. Bad input raises
:class:`BadRequest` (HTTP 400 in the API), unknown parcels or scenes :class:`NotFound`
(404). Every statement is a file of ``include/sql`` with bound values.

Time series are CANONICAL by default: one observation per parcel and datatake, chosen by
the rule documented in ``include/sql/schema_views.sql`` (most valid SCL pixels, then the
largest band count, the newest baseline, the smallest product name); ``raw=True`` returns
every granule's rows with a ``canonical`` flag.

From a notebook::

    from cbm_ops import analyst
    from cbm_ops.config import get_aoi
    from cbm_ops.db import transaction

    cfg = get_aoi("demo_flanders")
    with transaction(url) as conn:
        ts = analyst.parcel_time_series(conn, cfg, pid=20, tstype="s2", year=2018)
    # ts["date_part"], ts["band"], ts["mean"], ts["ndvi"], ts["cloudfree"] ...

Latency of the time series (``make bench``): :func:`time_series_latency`.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .config import STAGES, AoiConfig
from .db import q, transaction

# tstype of the JRC API -> card of dias_catalogue
TSTYPES = {"s2": "s2", "bs": "bs", "c6": "c6", "scl": "s2"}
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
CARD_BANDS = {"s2": S2_BANDS, "bs": ("VVb", "VHb"), "c6": ("VVc", "VHc")}
STAT_COLUMNS = ("count", "mean", "std", "min", "max", "p25", "p50", "p75")
YEAR_RANGE = (2014, 2100)                   # Sentinel-1A launch .. far future
FOOTPRINT_MARGIN_DEG = 0.05                 # scenes whose footprint is within ~5 km of the parcel
MAX_PEER_DISTANCE_M = 5000.0                # the JRC API's limits of parcelPeers
MAX_PEERS = 100
MAX_POLYGON_PARCELS = 1000                  # cap of parcelsByPolygon
MAX_POLYGON_KM2 = 2500.0                    # largest query polygon (geodesic area)
MAX_POLYGON_VERTICES = 10000
MAX_PLOT_PARCELS = 24
STATEMENT_TIMEOUT = "10s"                   # per statement of a read_only() transaction


class BadRequest(ValueError):
    """Invalid query input (the message says which parameter and why)."""


class NotFound(LookupError):
    """The parcel, scene or AOI does not exist."""


# ----------------------------------------------------------------- helpers
def read_only(conn, timeout: str = STATEMENT_TIMEOUT) -> None:
    """Make the rest of ``conn``'s transaction read-only, each statement cut after ``timeout``.

    Call it first in a transaction that serves an untrusted client (the API does).
    """
    conn.execute(q("api_read_only"), {"timeout": timeout})


def _year_window(year: int | None) -> tuple[dt.datetime, dt.datetime]:
    if year is None:
        return dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)
    if not isinstance(year, int) or not YEAR_RANGE[0] <= year <= YEAR_RANGE[1]:
        raise BadRequest(f"year: {year!r} is not a year between {YEAR_RANGE[0]} and {YEAR_RANGE[1]}")
    return dt.datetime(year, 1, 1), dt.datetime(year + 1, 1, 1)


def _epoch(t: dt.datetime) -> float:
    """Epoch seconds of a naive UTC timestamp (the JRC ``date_part``)."""
    return (t - dt.datetime(1970, 1, 1)).total_seconds()


def _finite(v: Any) -> Any:
    """NaN/inf (not JSON) as None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _columns(names: Sequence[str], rows: Iterable[dict[str, Any]]) -> dict[str, list]:
    out: dict[str, list] = {n: [] for n in names}
    for r in rows:
        for n in names:
            out[n].append(_finite(r.get(n)))
    return out


def check_bands(tstype: str, bands: Sequence[str] | None) -> tuple[str, ...] | None:
    """Validate a band filter for ``tstype``.

    Parameters
    ----------
    tstype : {"s2", "bs", "c6", "scl"}
    bands : sequence of str, optional
        Band codes as stored in sigs (``B04``, ``VVb``, ``VHc``); items may hold several
        codes separated by commas.

    Returns
    -------
    tuple of str or None
        The codes, or None for all bands.

    Raises
    ------
    BadRequest
        For an unknown tstype, a code that is not a band of that card, or any band for scl.
    """
    if tstype not in TSTYPES:
        raise BadRequest(f"tstype: {tstype!r} is not one of {', '.join(TSTYPES)}")
    if not bands:
        return None
    codes = tuple(c.strip() for b in bands for c in str(b).split(",") if c.strip())
    if not codes:
        return None
    if tstype == "scl":
        raise BadRequest("band: the scl time series has no bands (it returns SCL histograms)")
    allowed = CARD_BANDS[TSTYPES[tstype]]
    bad = [c for c in codes if c not in allowed]
    if bad:
        raise BadRequest(f"band: {bad[0][:20]!r} is not a {tstype} band (one of {', '.join(allowed)})")
    return tuple(dict.fromkeys(codes))


def _stage_of_band(cfg: AoiConfig) -> dict[tuple[str, str], str]:
    """(card, stored band code) -> stage that writes it; SCL -> scl."""
    out = {}
    for stage, (card, _kind) in STAGES.items():
        for b in cfg.stored_bands(stage):
            out[(card, b)] = stage
    return out


# ----------------------------------------------------------------- observations
def parcel_bbox(conn, cfg: AoiConfig, pid: int) -> Any:
    """EPSG:4326 box around parcel ``pid`` (WKB hex, for the footprint filter).

    Raises
    ------
    NotFound
        If the AOI's parcel table has no parcel ``pid``.
    """
    row = conn.execute(q("api_parcel_bbox", schema=cfg.schema, parcels=cfg.parcels.table),
                       {"pid": pid, "margin": FOOTPRINT_MARGIN_DEG}).fetchone()
    if row is None:
        raise NotFound(f"no parcel {pid} in AOI {cfg.name}")
    return row[0]


def parcel_observations(conn, cfg: AoiConfig, pid: int, cards: Sequence[str] = ("s2", "bs", "c6"),
                        year: int | None = None, raw: bool = False, with_hist: bool = True) -> list[dict[str, Any]]:
    """The observations of one parcel: scenes with sigs or hists rows for it.

    Parameters
    ----------
    pid : int
        Parcel id (``ogc_fid``).
    cards : sequence of {"s2", "bs", "c6"}
    year : int, optional
        Calendar year of the sensing time (UTC); default all.
    raw : bool
        Every granule's observation (with ``canonical`` and ``duplicates``) instead of only
        the canonical one per datatake.
    with_hist : bool
        Return the SCL histograms (else ``hist`` is None; less to transfer and parse).

    Returns
    -------
    list of dict
        By sensing time: obsid, obstime, card, sensor, datatake, reference, tile, epsg,
        relative_orbit, orbit_direction, processing_baseline, scl_pixels (SCL pixels with
        data), max_count (largest band count), hist (SCL histogram), cloudfree,
        canonical, duplicates (observations of the same datatake).

    Raises
    ------
    NotFound
        Unknown pid.
    BadRequest
        Invalid year.
    """
    start, end = _year_window(year)
    bbox = parcel_bbox(conn, cfg, pid)
    cur = conn.execute(q("api_parcel_observations", schema=cfg.schema),
                       {"pid": pid, "cards": list(cards), "start": start, "end": end, "bbox": bbox,
                        "with_hist": with_hist})
    names = [c.name for c in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur]
    for r in rows:
        r["card"], r["sensor"] = r["card"].strip(), r["sensor"].strip()
    return rows if raw else [r for r in rows if r["canonical"]]


def stage_lineage(conn, cfg: AoiConfig, obsids: Sequence[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """Stage status, lineage and quality of some scenes: ``{obsid: {stage: {...}}}``.

    ``lineage`` and ``quality`` are None for rows extracted before they were recorded.
    """
    out: dict[int, dict[str, dict[str, Any]]] = {}
    if not obsids:
        return out
    cur = conn.execute(q("api_stage_lineage", schema=cfg.schema), {"obsids": list(obsids)})
    for obsid, stage, status, lineage, quality, rows, parcels, updated, error in cur:
        out.setdefault(obsid, {})[stage] = {
            "status": status, "lineage": lineage, "quality": quality, "rows": rows, "parcels": parcels,
            "updated_at": updated.isoformat() if updated else None, "last_error": error}
    return out


def parcel_time_series(conn, cfg: AoiConfig, pid: int, tstype: str = "s2", bands: Sequence[str] | None = None,
                       raw: bool = False, year: int | None = None, *, scl: bool = True, ref: bool = False,
                       lineage: bool = False) -> dict[str, list]:
    """Time series of one parcel (the JRC ``parcelTimeSeries``), one row per observation and band.

    Parameters
    ----------
    conn : psycopg.Connection
    cfg : AoiConfig
    pid : int
        Parcel id (``ogc_fid``).
    tstype : {"s2", "bs", "c6", "scl"}
        Sentinel-2 bands, CARD-BS backscatter, CARD-COH6 coherence, or the SCL histograms.
    bands : sequence of str, optional
        Band filter (``B04``, ``VVb`` ...; comma-separated items allowed); default all.
    raw : bool
        Every granule's rows (adds ``canonical`` and ``duplicates``) instead of the
        canonical observation per datatake.
    year : int, optional
        Calendar year of the sensing time (UTC).
    scl : bool
        s2: add the per-date ``cloudfree`` flag from the parcel's SCL histogram.
    ref : bool
        Add the product name (``reference``).
    lineage : bool
        Add ``lineage``: the lineage record of the stage that wrote the row (None for
        rows written before lineage was recorded).

    Returns
    -------
    dict of str to list
        Equal-length columns, by sensing time, observation and band:

        * ``date_part`` (epoch seconds, float; sensing time UTC), ``obstime`` (ISO 8601 UTC),
          ``obsid``, ``datatake``;
        * s2/bs/c6: ``band``, ``count`` (valid pixels), ``mean``, ``std`` (ddof 0), ``min``,
          ``max``, ``p25``, ``p50``, ``p75`` (numpy linear percentiles) as stored: S2 DN on
          the pre-04.00 scale (reflectance = value / 10000, BOA_ADD_OFFSET applied), S1
          CARD-BS linear gamma0 power (dB = 10 log10), CARD-COH6 coherence 0-1;
        * s2: ``tile``, ``epsg``, ``ndvi`` = (B08 - B04) / (B08 + B04) of the observation's
          band means (None without both), ``cloudfree`` (no SCL 3, 8, 9, 10, 11 in the
          parcel; None without SCL histogram);
        * bs/c6: ``relative_orbit``, ``orbit_direction``;
        * scl: ``tile``, ``epsg``, ``scl_pixels``, ``cloudfree``, ``hist`` ({"4": 95, ...}).

    Raises
    ------
    BadRequest
        Unknown tstype, band not of that card, invalid year.
    NotFound
        Unknown pid.

    Notes
    -----
    Served by the primary keys only (no pid index needed): the parcel's box selects the
    scenes whose footprint is near it, then one (obsid, pid) probe of sigs and hists per
    scene. The latency is measured by :func:`time_series_latency`.
    """
    codes = check_bands(tstype, bands)
    card = TSTYPES[tstype]
    obs = parcel_observations(conn, cfg, pid, (card,), year, raw=True, with_hist=tstype == "scl")
    if not raw:
        obs = [o for o in obs if o["canonical"]]
    lin = stage_lineage(conn, cfg, [o["obsid"] for o in obs]) if lineage else {}
    stage_of = _stage_of_band(cfg)
    base = ["date_part", "obstime", "obsid", "datatake"]
    extra = (["canonical", "duplicates"] if raw else []) + (["reference"] if ref else []) + \
        (["lineage"] if lineage else [])
    if tstype == "scl":
        names = base + ["tile", "epsg", "scl_pixels", "cloudfree", "hist"] + extra
        rows = []
        for o in obs:
            if o["hist"] is None:
                continue
            rows.append({**o, "date_part": _epoch(o["obstime"]), "obstime": o["obstime"].isoformat(),
                         "lineage": lin.get(o["obsid"], {}).get("scl", {}).get("lineage")})
        return _columns(names, rows)
    names = base + ["band", *STAT_COLUMNS]
    names += (["tile", "epsg", "ndvi"] + (["cloudfree"] if scl else [])) if card == "s2" else \
        ["relative_orbit", "orbit_direction"]
    names += extra
    want = set(codes or CARD_BANDS[card])
    fetch = tuple(dict.fromkeys((*(codes or CARD_BANDS[card]), *(("B04", "B08") if card == "s2" else ()))))
    sig_rows: dict[int, list[tuple]] = {}
    if obs:
        cur = conn.execute(q("api_parcel_sigs", schema=cfg.schema),
                           {"obsids": [o["obsid"] for o in obs], "pid": pid, "bands": list(fetch)})
        for row in cur:
            sig_rows.setdefault(row[0], []).append(row[1:])
    out: dict[str, list] = {n: [] for n in names}
    per_obs = [n for n in names if n not in STAT_COLUMNS and n not in ("band", "lineage")]
    cols = [out[n] for n in per_obs]
    band_col, stat_cols = out["band"], [out[n] for n in STAT_COLUMNS]
    lin_col = out.get("lineage")
    for o in obs:
        srows = sig_rows.get(o["obsid"], [])
        ndvi = None
        if card == "s2":
            means = {r[0]: _finite(r[2]) for r in srows}
            b4, b8 = means.get("B04"), means.get("B08")
            if b4 is not None and b8 is not None and b4 + b8 != 0:
                ndvi = _finite(round((b8 - b4) / (b8 + b4), 6))
        values = {**o, "date_part": _epoch(o["obstime"]), "obstime": o["obstime"].isoformat(), "ndvi": ndvi}
        common = [values.get(n) for n in per_obs]
        stages = lin.get(o["obsid"], {})
        for band, *stats in srows:
            if band not in want:
                continue
            for col, v in zip(cols, common, strict=True):
                col.append(v)
            band_col.append(band)
            for col, v in zip(stat_cols, stats, strict=True):
                col.append(_finite(v))                      # NaN, inf (not JSON) as None
            if lin_col is not None:
                lin_col.append(stages.get(stage_of.get((card, band), ""), {}).get("lineage"))
    return out


# ----------------------------------------------------------------- parcels
def _parcel_srid(conn, cfg: AoiConfig) -> int:
    return int(conn.execute(q("api_parcel_srid"), {"schema": cfg.schema, "table": cfg.parcels.table}).fetchone()[0])


@functools.cache
def _from_wgs84(srid: int):
    from pyproj import Transformer

    return Transformer.from_crs(4326, srid, always_xy=True)


def _to_parcel_crs(geom, srid: int):
    """A lon/lat shapely geometry in the parcel CRS (pyproj), or None where PROJ cannot
    transform it (outside the CRS's domain: then no parcel can be there)."""
    import numpy as np
    import shapely

    tr = _from_wgs84(srid)
    out = shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1], errcheck=False)))
    return out if np.isfinite(shapely.get_coordinates(out)).all() else None


def parcels_info(conn, cfg: AoiConfig, pids: Sequence[int], with_geometry: bool = False,
                 crs: str = "parcel") -> dict[str, list]:
    """Attributes of some parcels (the JRC ``parcelById`` columns), in the order given.

    Parameters
    ----------
    pids : sequence of int
    with_geometry : bool
        Add ``geom``: the geometry as a GeoJSON string.
    crs : {"parcel", "4326"}
        ``parcel``: in the parcel table's CRS with a ``crs`` member (``EPSG:<srid>``,
        3 decimals for projected CRSs) as the JRC API; ``4326``: lon/lat (RFC 7946, 8 decimals).

    Returns
    -------
    dict of str to list
        ``ogc_fid``, every attribute of the parcel table (table order), ``crop`` (the
        ``parcels.crop_column`` attribute, if configured), ``srid``, ``area`` (geodesic,
        m2), ``clon``/``clat`` (centroid, EPSG:4326 degrees) and ``geom`` if asked.
        Unknown pids are left out.

    Raises
    ------
    BadRequest
        For an unknown ``crs``.
    """
    if crs not in ("parcel", "4326"):
        raise BadRequest(f"crs: {crs!r} is not 'parcel' or '4326'")
    ids = dict(schema=cfg.schema, parcels=cfg.parcels.table)
    attrs = [c.name for c in conn.execute(q("api_parcel_columns", **ids)).description
             if c.name not in ("ogc_fid", "wkb_geometry")]
    geographic = False
    if with_geometry and crs == "parcel":
        from pyproj import CRS

        geographic = CRS.from_epsg(_parcel_srid(conn, cfg)).is_geographic
    cur = conn.execute(q("api_parcels_info", **ids),
                       {"pids": [int(p) for p in pids], "with_geometry": with_geometry,
                        "wgs84": crs == "4326", "digits": 8 if geographic else 3})
    crop = cfg.parcels.crop_column
    computed = ["srid", "area", "clon", "clat"] + (["geom"] if with_geometry else [])
    # an attribute called like a computed column (LPIS files often have "area") keeps its
    # value under attr_<name>
    alias = {a: f"attr_{a}" if a in {*computed, "geom", "crop"} else a for a in attrs}
    names = ["ogc_fid", *alias.values(), *(["crop"] if crop else []), *computed]
    rows = []
    for pid, values, srid, area, clon, clat, geom in cur:
        r = {alias.get(k, k): v for k, v in values.items()}
        r.update(ogc_fid=pid, srid=srid, area=area, clon=clon, clat=clat, geom=geom)
        if crop:
            r["crop"] = values.get(crop)
        rows.append(r)
    return _columns(names, rows)


def parcel_by_id(conn, cfg: AoiConfig, pid: int, with_geometry: bool = False, crs: str = "parcel") -> dict[str, list]:
    """One parcel's attributes, area, centroid and optionally geometry (see :func:`parcels_info`).

    Raises
    ------
    NotFound
        Unknown pid.
    """
    info = parcels_info(conn, cfg, [pid], with_geometry, crs)
    if not info["ogc_fid"]:
        raise NotFound(f"no parcel {pid} in AOI {cfg.name}")
    return info


def _check_lonlat(lon: float, lat: float) -> None:
    if not (isinstance(lon, int | float) and math.isfinite(lon) and -180 <= lon <= 180):
        raise BadRequest(f"lon: {lon!r} is not a longitude in [-180, 180] degrees")
    if not (isinstance(lat, int | float) and math.isfinite(lat) and -90 <= lat <= 90):
        raise BadRequest(f"lat: {lat!r} is not a latitude in [-90, 90] degrees")


def parcel_by_location(conn, cfg: AoiConfig, lon: float, lat: float, with_geometry: bool = False,
                       crs: str = "parcel") -> dict[str, list]:
    """Parcels that contain the point (lon, lat) (EPSG:4326; several where parcels overlap).

    Returns
    -------
    dict of str to list
        Columns of :func:`parcels_info`; empty lists when no parcel is there.

    Raises
    ------
    BadRequest
        Longitude/latitude out of range.
    """
    import shapely

    _check_lonlat(lon, lat)
    srid = _parcel_srid(conn, cfg)
    pt = _to_parcel_crs(shapely.Point(float(lon), float(lat)), srid)
    pids = []
    if pt is not None:
        cur = conn.execute(q("api_pids_at_point", schema=cfg.schema, parcels=cfg.parcels.table),
                           {"x": pt.x, "y": pt.y, "srid": srid, "limit": MAX_POLYGON_PARCELS})
        pids = [r[0] for r in cur]
    return parcels_info(conn, cfg, pids, with_geometry, crs)


def parse_polygon(text: str):
    """A query polygon from WKT or GeoJSON (EPSG:4326 lon/lat), checked.

    Returns
    -------
    shapely.Polygon or shapely.MultiPolygon

    Raises
    ------
    BadRequest
        Unparsable text, control characters, not a (multi)polygon, invalid (with shapely's reason), coordinates
        outside lon/lat, more than MAX_POLYGON_VERTICES vertices or larger than
        MAX_POLYGON_KM2 (geodesic area, pyproj).
    """
    import shapely
    from pyproj import Geod

    text = (text or "").strip()
    if not text:
        raise BadRequest("polygon: empty; give a WKT or GeoJSON polygon in EPSG:4326")
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in text):
        raise BadRequest("polygon: control characters are not allowed")   # GEOS stops reading at a NUL
    if text.startswith("{"):             # RFC 7946 has no "crs"; an old-style one must say lon/lat
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        crs = doc.get("crs") if isinstance(doc, dict) else None
        props = crs.get("properties") if isinstance(crs, dict) else None
        name = props.get("name") if isinstance(props, dict) else crs
        if name is not None and not any(k in str(name).upper() for k in ("4326", "CRS84")):
            raise BadRequest(f"polygon: GeoJSON crs {str(name)[:80]!r} is not supported; give lon/lat "
                             "coordinates in EPSG:4326 (RFC 7946)")
    try:
        geom = shapely.from_geojson(text) if text.startswith("{") else shapely.from_wkt(text)
    except (shapely.errors.GEOSException, ValueError, TypeError, NotImplementedError) as exc:  # curves: NotImpl.
        raise BadRequest(f"polygon: not a WKT or GeoJSON geometry ({str(exc).splitlines()[0][:120]})") from None
    if geom is None or geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
        kind = geom.geom_type if geom is not None else "nothing"
        raise BadRequest(f"polygon: a Polygon or MultiPolygon is needed, not {kind}")
    if shapely.get_num_coordinates(geom) > MAX_POLYGON_VERTICES:
        raise BadRequest(f"polygon: more than {MAX_POLYGON_VERTICES} vertices")
    if not geom.is_valid:
        raise BadRequest(f"polygon: not valid ({shapely.is_valid_reason(geom)})")
    x0, y0, x1, y1 = geom.bounds
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise BadRequest("polygon: coordinates must be lon/lat degrees (EPSG:4326)")
    if shapely.has_z(geom):
        geom = shapely.force_2d(geom)
    km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0]) / 1e6
    if km2 > MAX_POLYGON_KM2:
        raise BadRequest(f"polygon: {km2:.0f} km2 is larger than the {MAX_POLYGON_KM2:.0f} km2 allowed")
    return geom


def parcels_by_polygon(conn, cfg: AoiConfig, polygon: str, with_geometry: bool = False, crs: str = "parcel",
                       max_parcels: int = 100) -> tuple[dict[str, list], bool]:
    """Parcels that intersect a polygon (WKT or GeoJSON, EPSG:4326), by pid, capped.

    Parameters
    ----------
    polygon : str
        See :func:`parse_polygon`.
    max_parcels : int
        1 .. MAX_POLYGON_PARCELS.

    Returns
    -------
    (dict of str to list, bool)
        Columns of :func:`parcels_info` for the first ``max_parcels`` pids, and whether
        more parcels intersect (the answer was truncated).

    Raises
    ------
    BadRequest
        Invalid polygon or cap.
    """
    if not 1 <= max_parcels <= MAX_POLYGON_PARCELS:
        raise BadRequest(f"max: {max_parcels} is not between 1 and {MAX_POLYGON_PARCELS}")
    geom = parse_polygon(polygon)
    srid = _parcel_srid(conn, cfg)
    local = _to_parcel_crs(geom, srid)
    pids = []
    if local is not None:
        cur = conn.execute(q("api_pids_in_polygon", schema=cfg.schema, parcels=cfg.parcels.table),
                           {"wkb": local.wkb, "srid": srid, "limit": max_parcels + 1})
        pids = [r[0] for r in cur]
    return parcels_info(conn, cfg, pids[:max_parcels], with_geometry, crs), len(pids) > max_parcels


def parcel_peers(conn, cfg: AoiConfig, pid: int, distance: float = 1000.0, max_parcels: int = 10) -> dict[str, list]:
    """Parcels of the same crop near parcel ``pid`` (the JRC ``parcelPeers``).

    Parameters
    ----------
    distance : float
        Metres, 0 < distance <= 5000: geodesic distance between the two geometries
        (0 for touching parcels).
    max_parcels : int
        1 .. 100.

    Returns
    -------
    dict of str to list
        ``pids`` and ``distance`` (m), nearest first (ties by pid).

    Raises
    ------
    BadRequest
        Distance or cap out of range, or the AOI has no ``parcels.crop_column``.
    NotFound
        Unknown pid.
    """
    if not (isinstance(distance, int | float) and math.isfinite(distance) and 0 < distance <= MAX_PEER_DISTANCE_M):
        raise BadRequest(f"distance: {distance!r} is not in (0, {MAX_PEER_DISTANCE_M:.0f}] metres")
    if not 1 <= max_parcels <= MAX_PEERS:
        raise BadRequest(f"max: {max_parcels} is not between 1 and {MAX_PEERS}")
    crop = cfg.parcels.crop_column
    if not crop:
        raise BadRequest(f"AOI {cfg.name} has no parcels.crop_column: peers need the crop attribute")
    parcel_bbox(conn, cfg, pid)                       # NotFound for an unknown pid
    columns = [d.name for d in conn.execute(q("api_parcel_columns", schema=cfg.schema,
                                              parcels=cfg.parcels.table)).description]
    if crop not in columns:
        raise BadRequest(f"AOI {cfg.name}: parcels.crop_column {crop!r} is not a column of its parcel table "
                         f"(columns: {', '.join(c for c in columns if c not in ('ogc_fid', 'wkb_geometry'))})")
    from pyproj import CRS

    c = CRS.from_epsg(_parcel_srid(conn, cfg))
    if c.is_geographic:      # degrees: conservative up to 75 degrees of latitude
        expand = distance / 111_320.0 / math.cos(math.radians(75.0))
    else:                    # native units per metre, with 5 % for the projection's scale error
        expand = distance / c.axis_info[0].unit_conversion_factor * 1.05
    cur = conn.execute(q("api_parcel_peers", schema=cfg.schema, parcels=cfg.parcels.table, crop=crop),
                       {"pid": pid, "distance": float(distance), "expand": expand, "limit": max_parcels})
    rows = cur.fetchall()
    return {"pids": [r[0] for r in rows], "distance": [round(r[1], 3) for r in rows]}


def observation(conn, cfg: AoiConfig, obsid: int) -> dict[str, Any]:
    """One scene: its catalogue record and per stage status, rows, lineage and quality.

    Returns
    -------
    dict
        The dias_catalogue columns (``footprint`` as a GeoJSON object, times ISO 8601)
        and ``stages``: {stage: {status, rows, parcels, lineage, quality, updated_at,
        last_error}}; lineage and quality are None for rows written before they were
        recorded.

    Raises
    ------
    NotFound
        Unknown obsid.
    """
    cur = conn.execute(q("api_observation", schema=cfg.schema), {"obsid": obsid})
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"no scene {obsid} in AOI {cfg.name}")
    names = [c.name for c in cur.description]
    rec = dict(zip(names[:-1], row[:-1], strict=True))
    rec["obsid"] = rec.pop("id")
    for k in ("card", "sensor"):
        rec[k] = rec[k].strip() if rec[k] else rec[k]
    for k in ("obstime", "harvested_at"):
        rec[k] = rec[k].isoformat() if rec[k] else None
    rec["footprint"] = json.loads(row[-1]) if row[-1] else None
    rec["stages"] = stage_lineage(conn, cfg, [obsid]).get(obsid, {})
    return rec


# ----------------------------------------------------------------- output
def to_csv(columns: dict[str, list]) -> str:
    """Column lists as CSV text (header row; None empty; dicts/lists as JSON)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = list(columns)
    w.writerow(names)
    n = len(columns[names[0]]) if names else 0
    for i in range(n):
        w.writerow(["" if (v := columns[c][i]) is None else json.dumps(v) if isinstance(v, dict | list) else v
                    for c in names])
    return buf.getvalue()


def plot_parcels(panels: Sequence[dict[str, Any]], title: str = "") -> bytes:
    """PNG of parcel time series: NDVI (cloudy dates hollow) and S1 VV/VH in dB.

    Parameters
    ----------
    panels : sequence of dict
        One per parcel: ``label`` (str), ``s2`` (a :func:`parcel_time_series` result of
        tstype s2 with B04/B08 and cloudfree) and ``bs`` (tstype bs with VVb/VHb).
    title : str

    Returns
    -------
    bytes
        PNG. Left axis NDVI (-0.2 .. 1): filled green where the parcel's SCL histogram is
        cloud-free, hollow grey where cloudy, orange x without SCL histogram; right axis
        CARD-BS VV and VH backscatter 10 log10(mean gamma0) dB (-30 .. 0). matplotlib's
        object API (no pyplot state), so it is safe in a threaded server.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(len(panels), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    big = n == 1
    fig = Figure(figsize=(9.0, 4.2) if big else (4.2 * cols, 2.6 * rows + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    fs = 9 if big else 7
    for ax, p in zip(axes.flat, panels, strict=False):
        s2 = p.get("s2") or {}
        by_obs: dict[int, dict[str, Any]] = {}
        for i, obsid in enumerate(s2.get("obsid", [])):
            by_obs.setdefault(obsid, {"t": dt.datetime.fromisoformat(s2["obstime"][i]), "ndvi": s2["ndvi"][i],
                                      "clear": s2.get("cloudfree", [None] * (i + 1))[i]})
        pts = sorted((o for o in by_obs.values() if o["ndvi"] is not None), key=lambda o: o["t"])
        styles = ((True, "o-", {"color": "tab:green", "ms": 3, "lw": 0.8}, "NDVI cloud-free (SCL)"),
                  (False, "o", {"mfc": "none", "color": "0.6", "ms": 3}, "NDVI cloudy (SCL 3, 8-11)"),
                  (None, "x", {"color": "tab:orange", "ms": 3}, "NDVI, no SCL histogram"))
        for value, fmt, style, label in styles:
            sel = [o for o in pts if o["clear"] is value]
            if sel:
                ax.plot([o["t"] for o in sel], [o["ndvi"] for o in sel], fmt, label=label, **style)
        ax.set_ylim(-0.2, 1.0)
        ax.set_ylabel("NDVI", fontsize=fs)
        ax.set_title(str(p.get("label", "")), fontsize=fs)
        ax.tick_params(labelsize=fs - 1)
        ax2 = ax.twinx()
        bs = p.get("bs") or {}
        for band, color in (("VVb", "tab:blue"), ("VHb", "tab:purple")):
            series = sorted((dt.datetime.fromisoformat(t), 10 * math.log10(m))
                            for t, b, m in zip(bs.get("obstime", []), bs.get("band", []), bs.get("mean", []),
                                               strict=True)
                            if b == band and m is not None and m > 0)
            if series:
                ax2.plot(*zip(*series, strict=True), "-", color=color, lw=0.6, alpha=0.8,
                         label=f"S1 {band[:2]} dB")
        ax2.set_ylim(-30, 0)
        ax2.set_ylabel("backscatter (dB)", fontsize=fs)
        ax2.tick_params(labelsize=fs - 1)
        for lab in ax.get_xticklabels():
            lab.set_rotation(30)
            lab.set_horizontalalignment("right")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    legend: dict[str, Any] = {}
    for a in fig.axes:
        for h, lb in zip(*a.get_legend_handles_labels(), strict=True):
            legend.setdefault(lb, h)
    if title:
        fig.suptitle(title, fontsize=fs + 1)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend), fontsize=fs - 1,
                   frameon=False)
    fig.tight_layout(rect=(0, 0.06 if big else 0.04, 1, 0.95 if title else 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100 if big else 90)
    return buf.getvalue()


def parcel_plot(conn, cfg: AoiConfig, pids: Sequence[int], year: int | None = None) -> bytes:
    """PNG of the canonical NDVI and S1 backscatter time series of up to 24 parcels.

    Raises
    ------
    BadRequest
        No pid, more than MAX_PLOT_PARCELS, invalid year.
    NotFound
        An unknown pid.
    """
    pids = list(dict.fromkeys(int(p) for p in pids))
    if not 1 <= len(pids) <= MAX_PLOT_PARCELS:
        raise BadRequest(f"pid: give 1 to {MAX_PLOT_PARCELS} parcels, not {len(pids)}")
    info = parcels_info(conn, cfg, pids)
    known = dict(zip(info["ogc_fid"], range(len(info["ogc_fid"])), strict=True))
    missing = [p for p in pids if p not in known]
    if missing:
        raise NotFound(f"no parcel {missing[0]} in AOI {cfg.name}")
    panels = []
    for pid in pids:
        i = known[pid]
        crop = info["crop"][i] if "crop" in info else None
        panels.append({
            "label": f"parcel {pid}" + (f" ({crop})" if crop else ""),
            "s2": parcel_time_series(conn, cfg, pid, "s2", ("B04", "B08"), year=year) if "s2" in cfg.cards else {},
            "bs": parcel_time_series(conn, cfg, pid, "bs", ("VVb", "VHb"), year=year) if "bs" in cfg.cards else {}})
    title = (f"{cfg.name}{' ' + str(year) if year else ''}: NDVI from the B04/B08 parcel means (left axis), "
             "Sentinel-1 CARD-BS backscatter in dB (right axis)\ncanonical observations: one per parcel and datatake")
    return plot_parcels(panels, title)


# ----------------------------------------------------------------- benchmark
def time_series_latency(url: str, cfg: AoiConfig, pids: Sequence[int], tstype: str = "s2",
                        year: int | None = None, repeat: int = 1) -> dict[str, Any]:
    """Wall time of :func:`parcel_time_series` per call, as the API runs it.

    Each call takes a pooled connection, makes its transaction read-only with the
    statement timeout, and runs the query (bbox, observations, signatures), as one API
    request does without HTTP and JSON. For ``make bench``::

        from cbm_ops.analyst import time_series_latency
        time_series_latency(url, cfg, pids=random_pids, tstype="s2", repeat=1)

    Parameters
    ----------
    pids : sequence of int
        Parcels to query, in order (use random pids: a repeated pid is served from cache).
    repeat : int
        Passes over ``pids``.

    Returns
    -------
    dict
        ``calls``, ``rows`` (total returned), ``p50_ms``, ``p95_ms``, ``max_ms``.
    """
    times, rows = [], 0
    for _ in range(repeat):
        for pid in pids:
            t0 = time.perf_counter()
            with transaction(url) as conn:
                read_only(conn)
                ts = parcel_time_series(conn, cfg, int(pid), tstype, year=year)
            times.append((time.perf_counter() - t0) * 1000)
            rows += len(ts["date_part"])
    times.sort()
    if not times:
        return {"calls": 0, "rows": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
    return {"calls": len(times), "rows": rows, "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(p95, 2), "max_ms": round(times[-1], 2)}
