"""The JRC RESTful API's other spellings and routes (``/query/...``), for the ``cbm`` client.

* Aliases over the same functions as :mod:`.queries`: ``parcelByID`` (the JRC code's
  spelling; the swagger's ``parcelById`` is the project's own route), ``parcelByPolygon``
  (the swagger's, parameter ``poly``), ``backgroundByParcelId`` (the swagger's).
* ``info``: the AOIs the user may read, their years and example parcel ids.
* ``weatherTimeSeries``: daily weather from the AOI's optional ``meteo`` table.
* ``backgroundByLocation``, ``backgroundByParcelID``: background images from the tile or
  WMS source an AOI configures (``jrc.backgrounds``); exactly ``{}`` where none is.

Image chips are in :mod:`.chips`. The query logic is :mod:`cbm_ops.analyst`.
"""

import html
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from cbm_ops import analyst
from cbm_ops.analyst import background, info, meteo
from cbm_ops.config import AoiConfig

from . import queries
from .deps import COLUMNS, ERRORS, Aoi, Api, ApiContext, Fmt, Pid, Ptype, Year, columns

router = APIRouter(tags=["JRC RESTful API"])

router.add_api_route("/query/parcelByID", queries.parcel_by_id, methods=["GET"], responses=COLUMNS,
                     summary="parcelById by the JRC code's spelling (the cbm client's)")
router.add_api_route("/query/parcelByPolygon", queries.parcels_by_polygon, methods=["GET"], responses=COLUMNS,
                     summary="parcelsByPolygon by the JRC swagger's spelling (parameter poly)")

Lon = Annotated[float, Query(ge=-180, le=180, description="longitude, EPSG:4326 degrees")]
Lat = Annotated[float, Query(ge=-90, le=90, description="latitude, EPSG:4326 degrees")]
BG_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS, 502: {"description": "the configured background source failed"},
    200: {"description": "the image's absolute URL (iformat=tif or raw), an HTML page, or exactly {} when no "
                         "background source is configured", "content": {"text/plain": {}, "text/html": {},
                                                                          "application/json": {}}}}


def base_url(api: ApiContext, request: Request) -> str:
    """The API's absolute URL ending with ``/`` (``CBM_API_PUBLIC_URL``, else the request's, with its root path)."""
    return (api.settings.public_url or str(request.base_url)).rstrip("/") + "/"


@router.get("/query/info", summary="The AOIs you may read: years, cards, backgrounds, example parcel ids",
            responses={**ERRORS, 200: {"description": "as the JRC's info page", "content": {"application/json": {}}}})
def info_page(api: Api, request: Request, aoi: Aoi | None = None) -> JSONResponse:
    """``aois.<aoi>``: ``years`` (strings), ``datasets`` (ptypes), ``time_series`` (cards),
    ``tms`` (backgrounds), ``id_table_column``, ``id_examples_<year>`` (parcel ids as text),
    ``request_examples``; plus ``server`` and ``helpers``. An AOI whose database cannot be
    read has ``error`` instead of its examples."""
    base = base_url(api, request)
    cfgs = [api.aoi_cfg(aoi)] if aoi else api.readable(request)
    out: dict[str, Any] = {}
    for cfg in cfgs:
        try:
            out[cfg.name] = api.run(cfg.name, info.aoi_info, base)
        except Exception as exc:  # noqa: BLE001 - one unreadable AOI must not hide the others
            out[cfg.name] = {"years": [str(y) for y in cfg.campaign_years()], "error": type(exc).__name__}
    return JSONResponse(info.info_page(out, base))


@router.get("/query/weatherTimeSeries", summary="Daily weather of a parcel (optional meteo table)", responses=COLUMNS)
def weather_time_series(api: Api, aoi: Aoi, pid: Pid, year: Year = None, ptype: Ptype = None,
                        format: Fmt = "json",
                        tsformat: Annotated[Literal["json", "csv"] | None, Query(
                            description="the JRC's name of format (csv: a file download)")] = None) -> Response:
    """Columns ``meteo_date`` (``YYYY-MM-DD``), ``tmin``, ``tmax``, ``tmean`` (degrees C) and
    ``prec`` (mm/day) of the calendar year ``year`` (default all), from the parcel's own rows or
    the grid cell holding its centroid; empty columns when the AOI has no weather."""
    name = api.dataset(aoi, ptype, year)
    fmt = tsformat or format
    disposition = {"Content-Disposition": f"attachment; filename=timeseries_{aoi}{year or ''}"
                   f"{'_' + ptype if ptype else ''}_{pid}_WeatherTS.csv"} if fmt == "csv" else None
    return columns(api.run(name, meteo.weather_time_series, pid, year), fmt, disposition)


def _background_aoi(api: ApiContext, request: Request, lon: float, lat: float, tms: str,
                    aoi: str | None) -> AoiConfig | None:
    """The AOI whose background ``tms`` serves the point: the named one, else the first readable
    AOI (by name) that configures ``tms`` and whose outline holds the point."""
    if aoi:
        cfg = api.aoi_cfg(aoi)
        return cfg if tms in cfg.jrc.backgrounds else None
    for cfg in api.readable(request):
        if tms in cfg.jrc.backgrounds and api.search(cfg.name, _contains, lon, lat, default=False):
            return cfg
    return None


def _contains(conn, cfg: AoiConfig, lon: float, lat: float) -> bool:
    from cbm_ops.db import q

    return bool(conn.execute(q("aoi_contains_point", schema=cfg.schema), {"lon": lon, "lat": lat}).fetchone()[0])


def _background(api: ApiContext, request: Request, cfg: AoiConfig | None, tms: str, lon: float, lat: float,
                chipsize: int, extend: float, iformat: str, raw: bool, outline: dict | None = None) -> Response:
    """The background answer: ``{}`` without a source, else the image's URL or an HTML page."""
    background.check_request(chipsize, extend)
    if cfg is None:
        return Response("{}", media_type="application/json")
    src = cfg.jrc.backgrounds[tms]
    bounds = background.square_3857(lon, lat, extend)
    cache = api.chips.cache
    token = cache.token({"kind": "background", "aoi": cfg.name, "tms": tms, "lon": lon, "lat": lat,
                         "chipsize": chipsize, "extend": extend, "src": src.model_dump(), "outline": outline})
    name = f"{tms}.{iformat}"
    path = cache.path(token, name)
    if not path.is_file():
        def make() -> None:
            arr = background.read_background(background.xml_file(cache.root, src, cfg), bounds, chipsize)
            rings = background.outline_pixels(outline, bounds, chipsize) if outline and iformat == "png" else None
            background.write_background(path, arr, bounds, iformat, rings)

        api.chips.pool.submit(make).result()
        cache.prune()
    url = base_url(api, request) + cache.url(token, name).lstrip("/")
    if raw or iformat == "tif":
        return PlainTextResponse(url)
    e = html.escape
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>{e(tms)}</title></head><body>"
                        f"<img src='{e(url)}' alt='{e(tms)} background'/><p>{e(url)}</p>"
                        f"<p>{e(src.attribution)}</p></body></html>")


Tms = Annotated[str, Query(max_length=40, pattern=r"^[A-Za-z0-9_-]{1,40}$",
                           description="background name (jrc.backgrounds of the AOI; case-insensitive)")]
Chipsize = Annotated[int, Query(description=f"image width and height, pixels (1..{background.MAX_CHIPSIZE_PX})")]
Extend = Annotated[float, Query(description="edge of the square, EPSG:3857 metres (ground: x cos(latitude))")]
Iformat = Annotated[Literal["tif", "png"], Query(description="GeoTIFF (answer: its URL) or PNG (answer: a page)")]
Raw = Annotated[str | None, Query(description="present: answer the image's URL also for png")]


@router.get("/query/backgroundByLocation", summary="Background image around a point (configured tile/WMS source)",
            response_class=Response, responses=BG_RESPONSES)
def background_by_location(api: Api, request: Request, lon: Lon, lat: Lat, chipsize: Chipsize = 256,
                           extend: Extend = 256.0, tms: Tms = "Google", iformat: Iformat = "png", raw: Raw = None,
                           aoi: Aoi | None = None, year: Year = None, ptype: Ptype = None) -> Response:
    """As the JRC's: EPSG:3857 image of ``chipsize`` pixels over ``extend`` metres around the
    point, from the first AOI you may read that configures ``tms`` and holds the point (or
    ``aoi``). ``iformat=tif`` or ``raw``: the absolute URL of ``<tms>.tif``/``.png``, which is
    downloaded without credentials; else an HTML page; exactly ``{}`` without a source."""
    t = tms.lower()
    cfg = _background_aoi(api, request, lon, lat, t, api.dataset(aoi, ptype, year) if aoi else None)
    return _background(api, request, cfg, t, lon, lat, chipsize, extend, iformat, raw is not None)


@router.get("/query/backgroundByParcelID", summary="Background image around a parcel's centroid",
            response_class=Response, responses=BG_RESPONSES)
def background_by_parcel_id(api: Api, request: Request, aoi: Aoi, pid: Pid, year: Year = None,
                            ptype: Ptype = None, chipsize: Chipsize = 256, extend: Extend = 256.0,
                            tms: Tms = "google", iformat: Iformat = "png", raw: Raw = None,
                            withGeometry: Annotated[bool, Query(  # noqa: N803 - the JRC's name
                                description="png: the parcel's outline in yellow")] = False) -> Response:
    """As ``backgroundByLocation`` at the parcel's centroid, from the AOI's own source."""
    name = api.dataset(aoi, ptype, year)
    p = api.run(name, analyst.parcel_by_id, pid, withGeometry, "4326")
    outline = json.loads(p["geom"][0]) if withGeometry else None
    t = tms.lower()
    cfg = api.aoi_cfg(name)
    return _background(api, request, cfg if t in cfg.jrc.backgrounds else None, t, p["clon"][0], p["clat"][0],
                       chipsize, extend, iformat, raw is not None, outline)


router.add_api_route("/query/backgroundByParcelId", background_by_parcel_id, methods=["GET"],
                     response_class=Response, responses=BG_RESPONSES,
                     summary="backgroundByParcelID by the JRC swagger's spelling")

