"""Parcel query routes in the shape of the JRC RESTful API (``/query/...``).

JSON objects of equal-length column lists (``format=csv`` for CSV), a PNG plot and one
scene's record; the query logic is :mod:`cbm_ops.analyst`. The JRC's own spellings of these
routes and parameters (``parcelByID``, ``parcelByPolygon``/``poly``, ``maxPeers``,
``tsformat``, ``wgs84``) are served by the same functions (:mod:`.jrc`).
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from cbm_ops import analyst
from cbm_ops.errors import BadRequest

from .deps import ALL_BANDS, COLUMNS, ERRORS, PID_MAX, Aoi, Api, Crs, Fmt, Geom, Pid, Ptype, Wgs84, Year, columns

router = APIRouter(tags=["parcel queries"])


@router.get("/query/parcelById", summary="One parcel: attributes, area, centroid, optional geometry", responses=COLUMNS)
def parcel_by_id(api: Api, aoi: Aoi, pid: Pid, with_geometry: Geom = False, crs: Crs = "parcel",
                 year: Year = None, ptype: Ptype = None, wgs84: Wgs84 = False, format: Fmt = "json") -> Response:
    """Columns ``pid`` (text), ``cropname``, ``cropcode`` (the JRC's), ``ogc_fid``, the parcel
    table's attributes, ``crop`` (``parcels.crop_column``), ``srid``, ``area`` (geodesic m2),
    ``clon``/``clat`` (centroid, EPSG:4326) and, with ``withGeometry=true``, ``geom`` (GeoJSON
    string). ``year``: a year of the AOI's campaign (one parcel set for all years)."""
    name = api.dataset(aoi, ptype, year)
    return columns(api.run(name, analyst.parcel_by_id, pid, with_geometry, "4326" if wgs84 else crs), format)


@router.get("/query/parcelByLocation", summary="Parcels at a point (lon/lat, EPSG:4326)", responses=COLUMNS)
def parcel_by_location(api: Api, aoi: Aoi, lon: Annotated[float, Query(ge=-180, le=180)],
                       lat: Annotated[float, Query(ge=-90, le=90)], with_geometry: Geom = False,
                       crs: Crs = "parcel", year: Year = None, ptype: Ptype = None, wgs84: Wgs84 = False,
                       format: Fmt = "json") -> Response:
    """The parcels that contain the point, columns as ``parcelById`` (empty lists if none)."""
    name = api.dataset(aoi, ptype, year)
    return columns(api.run(name, analyst.parcel_by_location, lon, lat, with_geometry, "4326" if wgs84 else crs),
                   format)


@router.get("/query/parcelsByPolygon", summary="Parcels intersecting a polygon (WKT, GeoJSON or JRC ring, EPSG:4326)",
            responses=COLUMNS)
def parcels_by_polygon(api: Api, aoi: Aoi,
                       polygon: Annotated[str | None, Query(min_length=1, max_length=200_000, description=(
                           "Polygon or MultiPolygon in lon/lat as WKT or GeoJSON, or a JRC ring lon_lat-lon_lat-... / "
                           f"lon lat,lon lat,...; at most {analyst.MAX_POLYGON_KM2:.0f} km2"))] = None,
                       poly: Annotated[str | None, Query(min_length=1, max_length=200_000,
                                                         description="the JRC swagger's name of polygon")] = None,
                       max: Annotated[int, Query(ge=1, le=analyst.MAX_POLYGON_PARCELS,
                                                 description="cap on the parcels returned")] = 100,
                       only_ids: Annotated[bool, Query(description="only pid (and geom): the JRC's only_ids")] = False,
                       with_geometry: Geom = False, crs: Crs = "parcel", year: Year = None,
                       ptype: Ptype = None, wgs84: Wgs84 = False, format: Fmt = "json") -> Response:
    """Columns as ``parcelById``, by pid; header ``X-CBM-Truncated: true`` when more parcels
    intersect than ``max``."""
    text = polygon if polygon is not None else poly
    if text is None:
        raise BadRequest("polygon: required (a WKT, GeoJSON or JRC ring polygon; the JRC swagger calls it poly)")
    name = api.dataset(aoi, ptype, year)
    result, truncated = api.run(name, analyst.parcels_by_polygon, text, with_geometry, "4326" if wgs84 else crs,
                                max, only_ids)
    return columns(result, format, {"X-CBM-Truncated": "true" if truncated else "false"})


@router.get("/query/parcelTimeSeries", summary="Time series of one parcel (signatures or SCL histograms)",
         responses=COLUMNS)
def parcel_time_series(
        api: Api, aoi: Aoi, pid: Pid,
        tstype: Annotated[Literal["s2", "bs", "c6", "scl"], Query(
            description="s2: Sentinel-2 bands; bs: CARD-BS backscatter; c6: CARD-COH6 coherence; "
                        "scl: SCL histograms")] = "s2",
        band: Annotated[list[Literal[ALL_BANDS]] | None, Query(  # type: ignore[valid-type]
            description="band filter (repeat the parameter for several), default all of the tstype")] = None,
        year: Year = None,
        raw: Annotated[bool, Query(description="every granule's rows with a canonical flag")] = False,
        scl: Annotated[bool, Query(description=(
            "s2: add cloudfree and hist (the SCL histogram); as the JRC's, only observations with an SCL "
            "histogram"))] = True,
        unscreened: Annotated[bool, Query(description=(
            "s2 with scl: also the observations without an SCL histogram (cloudfree and hist null)"))] = False,
        ref: Annotated[bool, Query(description="add the product name (reference)")] = False,
        lineage: Annotated[bool, Query(description="add the lineage of the stage that wrote each row")] = False,
        ptype: Ptype = None, format: Fmt = "json",
        tsformat: Annotated[Literal["json", "csv"] | None, Query(
            description="the JRC's name of format (csv: a file download)")] = None) -> Response:
    """One row per observation and band, by sensing time: ``date_part`` (epoch s), ``obstime``,
    ``obsid``, ``datatake``, ``band``, ``count``, ``mean``, ``std``, ``min``, ``max``, ``p25``,
    ``p50``, ``p75``; s2 adds ``tile``, ``epsg``, ``ndvi`` and, with ``scl``, ``cloudfree`` and
    ``hist``; bs/c6 add ``relative_orbit`` and ``orbit_direction``; scl gives ``scl_pixels``,
    ``cloudfree``, ``hist``. Canonical observations (one per parcel and datatake) unless
    ``raw=true``. Values as stored: S2 DN (reflectance = value / 10000), S1 linear gamma0,
    coherence 0-1."""
    name = api.dataset(aoi, ptype, year)
    fmt = tsformat or format
    ts = api.run(name, analyst.parcel_time_series, pid, tstype, band, raw, year, scl=scl, ref=ref,
                 lineage=lineage, screened_only=not unscreened)
    disposition = {"Content-Disposition": f"attachment; filename=timeseries_{aoi}{year or ''}"
                   f"{'_' + ptype if ptype else ''}_{pid}_{tstype}.csv"} if fmt == "csv" else None
    return columns(ts, fmt, disposition)


@router.get("/query/parcelPeers", summary="Parcels of the same crop nearby", responses=COLUMNS)
def parcel_peers(api: Api, aoi: Aoi, pid: Pid,
                 distance: Annotated[float, Query(gt=0, le=analyst.MAX_PEER_DISTANCE_M,
                                                  description="metres (geodesic, between geometries)")] = 1000.0,
                 max: Annotated[int, Query(ge=1, le=analyst.MAX_PEERS)] = 10,
                 maxPeers: Annotated[int | None, Query(ge=1, le=analyst.MAX_PEERS,  # noqa: N803 - the JRC's name
                                                       description="the JRC swagger's name of max")] = None,
                 min_area: Annotated[float, Query(ge=0, le=1e9, description=(
                     "leave out peers of at most this area (m2, geodesic); the JRC's 3000 by default, 0 keeps all"))]
                 = analyst.JRC_MIN_PEER_AREA_M2,
                 year: Year = None, ptype: Ptype = None, format: Fmt = "json") -> Response:
    """Columns ``pids`` and ``distance`` (m), nearest first; as the JRC's, peers of at most
    3,000 m2 are left out unless ``min_area`` says otherwise."""
    name = api.dataset(aoi, ptype, year)
    return columns(api.run(name, analyst.parcel_peers, pid, distance, maxPeers or max, min_area), format)


@router.get("/query/parcelPlot", summary="PNG: NDVI (cloudy dates marked) and S1 VV/VH in dB",
         response_class=Response,
         responses={**ERRORS, 200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                                    "description": "PNG image"}})
def parcel_plot(api: Api, aoi: Aoi,
                pid: Annotated[list[Annotated[int, Query(ge=0, le=PID_MAX)]], Query(
                    min_length=1, max_length=analyst.MAX_PLOT_PARCELS,
                    description=f"parcel id(s), 1 to {analyst.MAX_PLOT_PARCELS} (one panel each)")],
                year: Year = None) -> Response:
    """Canonical observations: NDVI from the B04/B08 means (filled: cloud-free by SCL, hollow:
    cloudy, x: no SCL histogram) and CARD-BS VV/VH 10 log10(gamma0)."""
    png = api.run(aoi, analyst.parcel_plot, pid, year)
    return Response(png, media_type="image/png")


@router.get("/query/observation", summary="One scene: catalogue record, stages, lineage and quality",
         responses={**ERRORS, 200: {"description": "the scene", "content": {"application/json": {
             "schema": {"type": "object"}}}}})
def one_observation(api: Api, aoi: Aoi, obsid: Annotated[int, Query(ge=0, le=PID_MAX, description="dias_catalogue.id")]
                    ) -> Response:
    """The dias_catalogue record (footprint as GeoJSON) and per stage its status, rows,
    ``lineage`` (package version, git commit, bands, nodata, all_touched, boa_add_offset ...;
    null for rows written before lineage was recorded) and ``quality``."""
    return JSONResponse(api.run(aoi, analyst.observation, obsid))
