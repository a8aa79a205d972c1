"""Parcel queries for analysts: parcels by id, location or polygon, peers, one scene.

Every function takes an open psycopg connection and the AOI configuration and returns
plain Python data in the shape of the JRC RESTful API (ec-jrc/cbm ``api/main.py``): a dict
of equal-length column lists, ``{"ogc_fid": [575541], "cropname": [...], ...}``, which
``pandas.DataFrame(result)`` or ``pd.read_json`` turn into a table. Bad input raises
:class:`~cbm_ops.errors.BadRequest` (HTTP 400 in the API), unknown parcels or scenes
:class:`~cbm_ops.errors.NotFound` (404). Every statement is a file of ``include/sql`` with
bound values.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..config import AoiConfig
from ..db import q
from ..errors import BadRequest, NotFound

YEAR_RANGE = (2014, 2100)                   # Sentinel-1A launch .. far future
FOOTPRINT_MARGIN_DEG = 0.05                 # scenes whose footprint is within ~5 km of the parcel
MAX_PEER_DISTANCE_M = 5000.0                # the JRC API's limits of parcelPeers
MAX_PEERS = 100
MAX_POLYGON_PARCELS = 1000                  # cap of parcelsByPolygon
MAX_POLYGON_KM2 = 2500.0                    # largest query polygon (geodesic area)
MAX_POLYGON_VERTICES = 10000
STATEMENT_TIMEOUT = "10s"                   # per statement of a read_only() transaction
JRC_KEYS = ("pid", "cropname", "cropcode")  # the JRC API's parcel columns the cbm client reads
JRC_MIN_PEER_AREA_M2 = 3000.0               # the JRC parcelPeers leaves out smaller peers


# ----------------------------------------------------------------- helpers
def read_only(conn, timeout: str = STATEMENT_TIMEOUT) -> None:
    """Make the rest of ``conn``'s transaction read-only, each statement cut after ``timeout``.

    Call it first in a transaction that serves an untrusted client (the API does).
    """
    conn.execute(q("api_read_only"), {"timeout": timeout})


def year_window(year: int | None) -> tuple[dt.datetime, dt.datetime]:
    if year is None:
        return dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)
    if not isinstance(year, int) or not YEAR_RANGE[0] <= year <= YEAR_RANGE[1]:
        raise BadRequest(f"year: {year!r} is not a year between {YEAR_RANGE[0]} and {YEAR_RANGE[1]}")
    return dt.datetime(year, 1, 1), dt.datetime(year + 1, 1, 1)


def epoch_seconds(t: dt.datetime) -> float:
    """Epoch seconds of a naive UTC timestamp (the JRC ``date_part``)."""
    return (t - dt.datetime(1970, 1, 1)).total_seconds()


def finite(v: Any) -> Any:
    """NaN/inf (not JSON) as None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def as_columns(names: Sequence[str], rows: Iterable[dict[str, Any]]) -> dict[str, list]:
    out: dict[str, list] = {n: [] for n in names}
    for r in rows:
        for n in names:
            out[n].append(finite(r.get(n)))
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
        The JRC API's ``pid`` (the ogc_fid as text), ``cropname`` (the
        ``parcels.crop_column`` attribute) and ``cropcode`` (``parcels.crop_code_column``,
        as text; null without the setting), then ``ogc_fid``, every attribute of the parcel
        table (table order), ``crop`` (``parcels.crop_column``, if configured), ``srid``,
        ``area`` (geodesic, m2), ``clon``/``clat`` (centroid, EPSG:4326 degrees) and
        ``geom`` if asked. Unknown pids are left out.

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
    crop, code = cfg.parcels.crop_column, cfg.parcels.crop_code_column
    computed = ["srid", "area", "clon", "clat"] + (["geom"] if with_geometry else [])
    # an attribute called like a computed or JRC column (LPIS files often have "area")
    # keeps its value under attr_<name>
    alias = {a: f"attr_{a}" if a in {*computed, *JRC_KEYS, "geom", "crop", "ogc_fid"} else a for a in attrs}
    names = [*JRC_KEYS, "ogc_fid", *alias.values(), *(["crop"] if crop else []), *computed]
    rows = []
    for pid, values, srid, area, clon, clat, geom in cur:
        r = {alias.get(k, k): v for k, v in values.items()}
        r.update(ogc_fid=pid, srid=srid, area=area, clon=clon, clat=clat, geom=geom, pid=str(pid),
                 cropname=values.get(crop) if crop else None,
                 cropcode=None if not code or values.get(code) is None else str(values[code]))
        if crop:
            r["crop"] = values.get(crop)
        rows.append(r)
    return as_columns(names, rows)


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


_NUM = r"-?\d+(?:\.\d+)?"
_RING_DASH = re.compile(rf"^{_NUM}_{_NUM}(?:-{_NUM}_{_NUM}){{2,}}$")
_RING_COMMA = re.compile(rf"^{_NUM}\s+{_NUM}(?:\s*,\s*{_NUM}\s+{_NUM}){{2,}}$")


def ring_wkt(text: str) -> str | None:
    """The JRC API's polygon ring formats as WKT, or None for other text.

    The JRC server pastes its ``polygon`` parameter into ``POLYGON((...))`` after replacing
    ``_`` by a space and ``-`` by a comma (ec-jrc/cbm ``api/main.py``, ``parcelsByPolygon``), so
    its clients send a ring of lon/lat pairs as ``lon_lat-lon_lat-...`` (the ``cbm`` GUI) or
    ``lon lat,lon lat,...``. Here ``-`` separates pairs only after a digit, so negative
    coordinates work (they do not in the JRC server); an open ring is closed.

    Returns
    -------
    str or None
        ``POLYGON((lon lat, ...))`` (EPSG:4326), not yet validated (:func:`parse_polygon`).
    """
    text = text.strip()
    if _RING_DASH.match(text):
        pairs = [p.split("_") for p in re.split(r"(?<=\d)-", text)]
    elif _RING_COMMA.match(text):
        pairs = [p.split() for p in text.split(",")]
    else:
        return None
    pts = [(float(x), float(y)) for x, y in pairs]
    if pts[0] != pts[-1]:
        pts.append(pts[0])
    return "POLYGON((" + ", ".join(f"{x!r} {y!r}" for x, y in pts) + "))"


def parse_polygon(text: str):
    """A query polygon from WKT, GeoJSON or a JRC ring (EPSG:4326 lon/lat), checked.

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
    text = ring_wkt(text) or text
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
                       max_parcels: int = 100, only_ids: bool = False) -> tuple[dict[str, list], bool]:
    """Parcels that intersect a polygon (WKT or GeoJSON, EPSG:4326), by pid, capped.

    Parameters
    ----------
    polygon : str
        See :func:`parse_polygon`.
    max_parcels : int
        1 .. MAX_POLYGON_PARCELS.
    only_ids : bool
        Only ``pid`` (text, as the JRC API) and ``geom`` if asked.

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
    info = parcels_info(conn, cfg, pids[:max_parcels], with_geometry, crs)
    if only_ids:
        info = {k: info[k] for k in ("pid", *(["geom"] if with_geometry else []))}
    return info, len(pids) > max_parcels


def parcel_peers(conn, cfg: AoiConfig, pid: int, distance: float = 1000.0, max_parcels: int = 10,
                 min_area: float = 0.0) -> dict[str, list]:
    """Parcels of the same crop near parcel ``pid`` (the JRC ``parcelPeers``).

    Parameters
    ----------
    distance : float
        Metres, 0 < distance <= 5000: geodesic distance between the two geometries
        (0 for touching parcels).
    max_parcels : int
        1 .. 100.
    min_area : float
        Leave out peers of at most this geodesic area (m2). The JRC server drops peers up
        to 3,000 m2 in EPSG:3035 (:data:`JRC_MIN_PEER_AREA_M2`, the API's default); 0
        keeps every peer.

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
    if not (isinstance(min_area, int | float) and math.isfinite(min_area) and min_area >= 0):
        raise BadRequest(f"min_area: {min_area!r} is not an area >= 0 m2")
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
                       {"pid": pid, "distance": float(distance), "expand": expand, "limit": max_parcels,
                        "min_area": float(min_area)})
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

