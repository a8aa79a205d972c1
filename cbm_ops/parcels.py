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

from .config import AoiConfig
from .db import ensure_schema, q, transaction

log = logging.getLogger(__name__)


class ParcelImportError(RuntimeError):
    """The parcel file cannot be imported (message says why)."""


@dataclass
class ImportReport:
    table: str
    parcels: int = 0
    srid: int | None = None
    repaired: int = 0
    empty_ids: list[int] = field(default_factory=list)
    version: str = ""
    unchanged: bool = False
    seconds: float = 0.0


def _pg_conninfo(url: str) -> str:
    """libpq keyword string for GDAL's PG driver (``PG:`` prefix added by the caller).

    Values are quoted and escaped by psycopg (a password may contain quotes or spaces).
    """
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from .db import _libpq_url

    parts = {k: v for k, v in conninfo_to_dict(_libpq_url(url)).items() if v not in (None, "")}
    return make_conninfo(**parts)


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
        Unreadable file, no CRS, non-polygon layer, or a changed parcel set with results
        and ``replace`` False.
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


def _finish_import(url: str, cfg: AoiConfig, source: Path, ids: dict, aoi_wkt: str | None,
                   replace: bool, t0: float) -> ImportReport:
    schema, table = cfg.schema, cfg.parcels.table
    rep = ImportReport(table=f"{schema}.{table}")
    with transaction(url) as conn:
        rep.repaired = conn.execute(q("parcels_repair", **ids)).rowcount
        rep.empty_ids = [r[0] for r in conn.execute(q("parcels_empty", **ids))]
        rep.parcels, rep.srid, rep.version = conn.execute(q("parcels_stats", **ids)).fetchone()
        if rep.parcels == 0:
            raise ParcelImportError(f"{source}: the layer has no parcels")
        if rep.srid in (None, 0):
            raise ParcelImportError(f"{source}: imported geometries have no SRID")
        old = conn.execute(q("aoi_get", schema=schema), {"name": cfg.name}).fetchone()
        exists = conn.execute(q("table_exists"), {"name": f'"{schema}"."{table}"'}).fetchone()[0]
        if exists and old and old[3] == rep.version:
            rep.unchanged = True
        else:
            if exists and not replace:
                n = conn.execute(q("results_count", schema=schema)).fetchone()[0]
                if n:
                    raise ParcelImportError(
                        f"{schema}.{table} holds another parcel set and {schema} has {n} result "
                        "rows whose pid refers to it; use replace=True (--replace) to swap the "
                        "parcel set, or import into a new AOI/schema")
            conn.execute(q("parcels_swap", **ids))
        wkt = aoi_wkt or cfg.aoi_wkt
        conn.execute(q("aoi_set" if wkt else "aoi_from_parcels", **ids),
                     {"name": cfg.name, "wkt": wkt, "table": table, "srid": rep.srid,
                      "version": rep.version})
    rep.seconds = round(time.perf_counter() - t0, 3)
    if rep.empty_ids:
        log.warning("%d parcels are empty after ST_MakeValid and will get no signatures: %s",
                    len(rep.empty_ids), rep.empty_ids[:50])
    log.info("parcels %s: %d parcels, EPSG:%s, %d repaired, %d empty, version %s%s, %.1f s",
             rep.table, rep.parcels, rep.srid, rep.repaired, len(rep.empty_ids), rep.version[:12],
             " (unchanged)" if rep.unchanged else "", rep.seconds)
    return rep


def set_aoi(url: str, cfg: AoiConfig, wkt: str) -> None:
    """Set the AOI outline (EPSG:4326 WKT) without importing parcels.

    Raises
    ------
    psycopg.errors.InternalError_
        If PostGIS cannot parse ``wkt``.
    """
    ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
    with transaction(url) as conn:
        conn.execute(q("aoi_set", schema=cfg.schema),
                     {"name": cfg.name, "wkt": wkt, "table": None, "srid": None, "version": None})
