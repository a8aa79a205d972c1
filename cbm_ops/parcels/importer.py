"""Parcel import (LPIS/GSAA) and the AOI row.

The parcel file (GeoPackage, Shapefile, GeoJSON, anything OGR reads) is loaded with
``gdal.VectorTranslate`` (the ogr2ogr library call) into a staging table of the AOI's
schema with the columns users know from ogr2ogr: ``ogc_fid`` (the parcel id, ``pid`` in
sigs/hists) and ``wkb_geometry`` (MultiPolygon, source SRID kept). Invalid geometries are
repaired with PostGIS ``ST_MakeValid``; parcels that stay empty are reported. The staging
table then replaces the parcel table in one transaction.

Because ``sigs.pid`` refers to ``ogc_fid``, replacing a parcel set that already has results
is refused unless ``replace=True`` (the old results would refer to other parcels). The
parcel set's version (an md5 of ids and geometries) is stored in ``aois`` and keys the
rasterized parcel grids, so a changed parcel set invalidates them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ..config import AoiConfig
from ..db import ensure_schema, libpq_url, one, q, q_ddl, transaction
from ..db.partitions import list_partitions
from ..errors import ParcelImportError

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    """What an import did (returned, logged, printed by ``cbm import-parcels``).

    ``excluded`` lists every parcel left out, ``{"id": ogc_fid, "reason": ...}``: features
    that are not polygons, parcels far outside the set (coordinates of another CRS).
    ``changed``: ``{"changed": n, "new": n, "removed": n}`` against the previous parcel
    set; ``cleared_rows``: result rows deleted for changed and removed parcels (replace).
    ``unchanged``: same ids and geometries as the imported set (results kept; the
    attributes are still refreshed from the file).
    """

    table: str
    parcels: int = 0
    srid: int | None = None
    repaired: int = 0
    empty_ids: list[int] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)
    version: str = ""
    unchanged: bool = False
    changed: dict[str, int] = field(default_factory=dict)
    cleared_rows: int = 0
    seconds: float = 0.0


def _pg_conninfo(url: str) -> str:
    """libpq keyword string for GDAL's PG driver (``PG:`` prefix added by the caller).

    Values are quoted and escaped by psycopg (a password may contain quotes or spaces).
    """
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = {k: str(v) for k, v in conninfo_to_dict(libpq_url(url)).items() if v not in (None, "")}
    return make_conninfo("", **parts)


def _vector_translate(url: str, source: Path, layer: str | None, schema: str, table: str) -> None:
    from osgeo import gdal, ogr

    gdal.UseExceptions()
    src = gdal.OpenEx(str(source), gdal.OF_VECTOR)
    if src is None or src.GetLayerCount() == 0:
        raise ParcelImportError(f"{source}: no vector layer")
    lyr = src.GetLayerByName(layer) if layer else src.GetLayer(0)
    if lyr is None:
        raise ParcelImportError(f"{source}: no layer {layer!r}")
    if ogr.GT_Flatten(lyr.GetGeomType()) not in (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbUnknown):
        raise ParcelImportError(f"{source}: layer {lyr.GetName()} is not polygonal")
    if lyr.GetSpatialRef() is None:
        raise ParcelImportError(f"{source}: layer {lyr.GetName()} has no CRS; assign one first")
    n = lyr.GetFeatureCount()
    log.info("importing %d parcels from %s (layer %s)", n, source, lyr.GetName())

    def progress(frac, _msg, _data, state={"last": -1}):  # noqa: B006 - per-call state
        step = int(frac * 10)
        if step > state["last"]:
            state["last"] = step
            log.info("parcel import %d%%", step * 10)
        return 1

    opts = gdal.VectorTranslateOptions(
        format="PostgreSQL", layers=[lyr.GetName()], layerName=f"{schema}.{table}",
        geometryType="PROMOTE_TO_MULTI",
        layerCreationOptions=["GEOMETRY_NAME=wkb_geometry", "FID=ogc_fid",
                              "SPATIAL_INDEX=NONE", "PRECISION=NO", "LAUNDER=YES"],
        options=["-preserve_fid"] if lyr.GetFIDColumn() else [],
        callback=progress)
    gdal.VectorTranslate(f"PG:{_pg_conninfo(url)}", src, options=opts)


def import_parcels(url: str, cfg: AoiConfig, source: str | Path | None = None, *,
                   layer: str | None = None, aoi_wkt: str | None = None,
                   replace: bool = False) -> ImportReport:
    """Import a parcel file into ``{schema}.{parcels.table}`` and set the AOI row.

    Parameters
    ----------
    url : str
        Database URL.
    cfg : AoiConfig
        AOI (schema, parcel table, default source/layer/outline).
    source : path, optional
        Parcel file; default ``parcels.source`` of the configuration.
    layer : str, optional
        Layer name; default ``parcels.layer`` or the first layer.
    aoi_wkt : str, optional
        AOI outline in EPSG:4326 WKT; default ``aoi_wkt`` of the config, else the parcel
        extent (densified, transformed to EPSG:4326).
    replace : bool
        Allow replacing a different parcel set that already has sigs/hists rows.

    Returns
    -------
    ImportReport
        Parcels, SRID, repaired and still-empty parcel ids, version.

    Raises
    ------
    ParcelImportError
        Unreadable file, no CRS, non-polygon layer, parcels outside the declared CRS's area
        of use or an extent implausibly larger than the parcels (a wrong CRS), or a
        changed parcel set with results and ``replace`` False (the message says how many
        parcels changed and how many result rows exist).

    Notes
    -----
    Features that are not polygons and parcels far outside the set are excluded and
    listed in ``ImportReport.excluded`` with the reason. With ``replace`` the results of
    changed and removed parcels are deleted (``cleared_rows``); unchanged parcels keep
    theirs; re-run the extracted scenes (``cbm requeue --all``) for the new ones.
    """
    t0 = time.perf_counter()
    source = Path(source) if source else cfg.resolve(cfg.parcels.source)
    if source is None or not source.exists():
        raise ParcelImportError(f"parcel file {source} not found (set parcels.source or pass a path)")
    schema, table = cfg.schema, cfg.parcels.table
    staging = f"_import_{table}"[:63]
    ensure_schema(url, schema, pid_indexes=cfg.pid_indexes)
    ids = dict(schema=schema, staging=staging, parcels=table)
    with transaction(url) as conn:   # a failed earlier import may have left it
        conn.execute(q("parcels_drop_staging", **ids))
    try:
        _vector_translate(url, source, layer or cfg.parcels.layer, schema, staging)
        return _finish_import(url, cfg, source, ids, aoi_wkt, replace, t0)
    finally:
        with transaction(url) as conn:
            conn.execute(q("parcels_drop_staging", **ids))


def _outliers(points: list[tuple[int, float, float]], srid: int, factor: float) -> list[tuple[int, float]]:
    """Parcels far from the rest: (ogc_fid, distance in km) of the outliers.

    Robust to up to 10 % of bad parcels: the centre is the coordinate-wise median, the
    scale the 90th percentile of the distances to it (at least 10 km); a parcel farther
    than ``factor`` times the scale is an outlier. Coordinates that are not valid in a
    geographic CRS (|lat| > 90, |lon| > 180) always are.
    """
    import numpy as np
    from pyproj import CRS

    if len(points) < 3:
        return []
    ids = np.array([p[0] for p in points])
    xy = np.array([(p[1], p[2]) for p in points], dtype=np.float64)
    crs = CRS.from_epsg(srid)
    km = 111.32 if crs.is_geographic else (crs.axis_info[0].unit_conversion_factor / 1000.0
                                           if crs.axis_info else 0.001)
    invalid = np.zeros(len(ids), bool)
    if crs.is_geographic:
        invalid = (np.abs(xy[:, 0]) > 180) | (np.abs(xy[:, 1]) > 90)
    centre = np.median(xy[~invalid], axis=0) if (~invalid).any() else np.median(xy, axis=0)
    d = np.hypot(*(xy - centre).T) * km
    scale = max(float(np.percentile(d[~invalid], 90)) if (~invalid).any() else 0.0, 10.0)
    far = invalid | (d > factor * scale)
    return [(int(i), round(float(x), 1)) for i, x in zip(ids[far], d[far], strict=True)]


def _check_extent(conn, ids: dict, cfg: AoiConfig, srid: int, n: int) -> dict:
    """Refuse a parcel set whose extent is outside its CRS's area of use, or implausibly
    large for its parcel count (both: coordinates of another CRS than the declared one)."""
    from pyproj import CRS

    pc = cfg.parcels
    try:
        with conn.transaction():
            row = conn.execute(q("parcels_extent_4326", **ids), {"srid": srid}).fetchone()
    except psycopg.Error as exc:
        raise ParcelImportError(f"the parcels' coordinates cannot be transformed from their declared CRS "
                                f"EPSG:{srid} to EPSG:4326 ({' '.join(str(exc).split())[:200]}): is the "
                                "declared CRS right?") from None
    west, south, east, north, box_area, parcel_area, km2 = row
    area = CRS.from_epsg(srid).area_of_use
    tol = pc.crs_tolerance_deg
    if area is not None and (west < area.west - tol or east > area.east + tol or south < area.south - tol
                             or north > area.north + tol):
        raise ParcelImportError(
            f"the parcels lie at lon {west:.2f}..{east:.2f}, lat {south:.2f}..{north:.2f}, outside the area of use "
            f"of their declared CRS EPSG:{srid} ({area.name}: lon {area.west:.1f}..{area.east:.1f}, lat "
            f"{area.south:.1f}..{area.north:.1f}): the file's CRS is probably wrong (assign the right one, "
            "e.g. ogr2ogr -a_srs)")
    if km2 > pc.max_outline_km2 or (n > 1 and km2 / n > pc.max_km2_per_parcel):
        raise ParcelImportError(
            f"the parcel extent ({km2:,.0f} km2 for {n} parcels, {km2 / max(n, 1):,.0f} km2 per parcel) is "
            f"implausible (limits parcels.max_outline_km2 = {pc.max_outline_km2:,.0f}, max_km2_per_parcel = "
            f"{pc.max_km2_per_parcel:,.0f}): some parcels have coordinates of another CRS or lie far from the "
            "rest; fix the file, or set aoi_wkt")
    return {"outline_km2": round(float(km2), 3), "lon": [west, east], "lat": [south, north]}


def _finish_import(url: str, cfg: AoiConfig, source: Path, ids: dict, aoi_wkt: str | None,
                   replace: bool, t0: float) -> ImportReport:
    schema, table = cfg.schema, cfg.parcels.table
    rep = ImportReport(table=f"{schema}.{table}")
    with transaction(url) as conn:
        _repair_and_check(conn, cfg, source, ids, rep)
        extent = _check_extent(conn, ids, cfg, int(rep.srid or 0), rep.parcels) if not (aoi_wkt or cfg.aoi_wkt) else {}
        conn.execute(q("aoi_lock", schema=schema), {"name": cfg.name})   # writers in flight finish first
        _swap(conn, cfg, ids, rep, replace)
        wkt = aoi_wkt or cfg.aoi_wkt
        conn.execute(q("aoi_set" if wkt else "aoi_from_parcels", **ids),
                     {"name": cfg.name, "wkt": wkt, "table": table, "srid": rep.srid,
                      "version": rep.version})
    rep.seconds = round(time.perf_counter() - t0, 3)
    _log_import(cfg, rep, extent)
    return rep


def _repair_and_check(conn, cfg: AoiConfig, source: Path, ids: dict, rep: ImportReport) -> None:
    """Repair the staging table, drop what is not a parcel, and fill ``rep`` (parcels, srid, version).

    Raises
    ------
    ParcelImportError
        No parcels, no SRID, or no parcel left valid in the declared CRS.
    """
    rep.repaired = conn.execute(q("parcels_repair", **ids)).rowcount
    conn.execute(q("parcels_collections", **ids))
    rep.excluded += [{"id": r[0], "reason": f"not a polygon ({r[1]})"}
                     for r in conn.execute(q("parcels_nonpolygonal", **ids))]
    rep.empty_ids = [r[0] for r in conn.execute(q("parcels_empty", **ids))]
    rep.parcels, rep.srid, _ = one(conn.execute(q("parcels_stats", **ids)))
    if rep.parcels == 0:
        raise ParcelImportError(f"{source}: the layer has no parcels"
                                + (f" ({len(rep.excluded)} features that are not polygons)"
                                   if rep.excluded else ""))
    if rep.srid in (None, 0):
        raise ParcelImportError(f"{source}: imported geometries have no SRID")
    if cfg.parcels.exclude_outliers:
        far = _outliers(conn.execute(q("parcels_points", **ids)).fetchall(), int(rep.srid),
                        cfg.parcels.outlier_factor)
        if far:
            conn.execute(q("parcels_delete_ids", **ids), {"ids": [i for i, _ in far]})
            rep.excluded += [{"id": i, "reason": f"far outside the parcel set ({d:,.0f} km from its centre)"}
                             for i, d in far]
    srid = rep.srid
    rep.parcels, rep.srid, rep.version = one(conn.execute(q("parcels_stats", **ids)))
    if rep.parcels == 0:
        raise ParcelImportError(f"{source}: all {len(rep.excluded)} parcels have coordinates that are not valid "
                                f"in their declared CRS EPSG:{srid}: is the declared CRS right?")


def _swap(conn, cfg: AoiConfig, ids: dict, rep: ImportReport, replace: bool) -> None:
    """Replace the parcel table by the staging table; refuse (or, with ``replace``, clear the
    results of changed and removed parcels) when another parcel set has results.

    Raises
    ------
    ParcelImportError
        Another parcel set with results, without ``replace``.
    """
    schema, table = cfg.schema, cfg.parcels.table
    old = conn.execute(q("aoi_get", schema=schema), {"name": cfg.name}).fetchone()
    exists = one(conn.execute(q("table_exists"), {"name": f'"{schema}"."{table}"'}))[0]
    if exists and old and old[3] == rep.version:
        # same ids and geometries: results and stored grids stay valid, but the table is
        # still replaced, so changed attributes (crop declarations) take effect
        rep.unchanged = True
    elif exists:
        diff = conn.execute(q("parcels_changed", **ids)).fetchall()
        pids = [r[0] for r in diff if r[1] in ("changed", "removed")]
        rep.changed = {k: sum(1 for r in diff if r[1] == k) for k in ("changed", "new", "removed")}
        n, estimated = one(conn.execute(q("results_count", schema=schema), {
            "sigs": f'"{schema}".sigs', "hists": f'"{schema}".hists'}))
        if n and not replace:
            raise ParcelImportError(
                f"{schema}.{table} holds another parcel set ({rep.changed['changed']} parcels changed, "
                f"{rep.changed['removed']} removed, {rep.changed['new']} new) and {schema} has "
                f"{'about ' if estimated else ''}{n:,} result rows whose pid refers to it: refused. "
                "--replace (replace=True) swaps the set and deletes the results of the changed and removed "
                "parcels (unchanged parcels keep theirs), or import into a new AOI/schema")
        if n and pids:
            rep.cleared_rows = _clear_results(conn, schema, pids)
    conn.execute(q_ddl("parcels_swap", {"srid": rep.srid}, **ids))


def _log_import(cfg: AoiConfig, rep: ImportReport, extent: dict) -> None:
    if rep.empty_ids:
        log.warning("%d parcels are empty after ST_MakeValid and will get no signatures: %s",
                    len(rep.empty_ids), rep.empty_ids[:50])
    for e in rep.excluded[:200]:
        log.warning("parcel %s excluded: %s", e["id"], e["reason"])
    if len(rep.excluded) > 200:
        log.warning("... %d parcels excluded in all (every id is in the import report)", len(rep.excluded))
    if rep.cleared_rows or rep.changed.get("new") or rep.changed.get("changed"):
        log.warning("parcel set replaced: %s; %d result rows of changed/removed parcels deleted; scenes already "
                    "extracted have no signatures for the new and changed parcels: re-run them with "
                    "`cbm requeue --aoi %s --all`", rep.changed, rep.cleared_rows, cfg.name)
    log.info("parcels %s: %d parcels, EPSG:%s, %d repaired, %d empty, %d excluded, version %s%s, %s, %.1f s",
             rep.table, rep.parcels, rep.srid, rep.repaired, len(rep.empty_ids), len(rep.excluded),
             rep.version[:12], " (unchanged)" if rep.unchanged else "", extent, rep.seconds)


def _clear_results(conn, schema: str, pids: list[int]) -> int:
    """Delete the sigs/hists rows of some parcels, partition by partition."""
    n = 0
    for part in list_partitions(conn, schema):
        n += conn.execute(q("sigs_delete_pids", schema=schema, part=part.sigs), {"pids": pids}).rowcount
        n += conn.execute(q("hists_delete_pids", schema=schema, part=part.hists), {"pids": pids}).rowcount
    return n
