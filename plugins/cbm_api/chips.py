"""Image chip routes of the JRC RESTful API (``/query/...``) and the chip files (``/static/tmp``).

* ``rawChipByLocation``, ``rawChipByParcelID``: one GeoTIFF per Sentinel-2 datatake of a
  band, answer ``{"dates": ["YYYYMMDDTHHMMSS", ...], "chips": ["/static/tmp/<dir>/<name>.<band>.tif", ...]}``;
* ``chipsByLocation``, ``chipsByParcelID``: stretched PNG composites, an HTML page of them
  (the JRC's) or ``format=json`` the same index as above;
* ``rawChipsBatch`` (POST, given products x bands), ``rawS1ChipsBatch`` (POST, Sentinel-1
  CARD per day in a window).

Chip paths are relative to the API root: the ``cbm`` client downloads
``{api_url}{chip}`` without credentials, as from the JRC's ``/static/tmp``. The files are
served by a sub-application mounted at ``/static/tmp`` (:func:`static_app`), outside the
login, under directory names that only a caller allowed the request learns
(:class:`cbm_ops.analyst.chips.ChipCache`). Scenes come from the catalogues of the AOIs the
user may read (or the ``aoi`` given); the logic is :mod:`cbm_ops.analyst.chips`.
"""

import html
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from cbm_ops import analyst
from cbm_ops.analyst import chips
from cbm_ops.config import AoiConfig
from cbm_ops.errors import BadRequest, NotFound

from .deps import ERRORS, Aoi, Api, ApiContext, Pid, Ptype, Year

router = APIRouter(tags=["image chips (JRC RESTful API)"])

S2Band = Literal[chips.S2_CHIP_BANDS]  # type: ignore[valid-type]
Lon = Annotated[float, Query(ge=-180, le=180, description="longitude, EPSG:4326 degrees")]
Lat = Annotated[float, Query(ge=-90, le=90, description="latitude, EPSG:4326 degrees")]
Start = Annotated[str, Query(max_length=10, description="first day, YYYY-MM-DD")]
End = Annotated[str, Query(max_length=10, description="last day (included), YYYY-MM-DD")]
Chipsize = Annotated[float, Query(gt=0, description="chip edge, metres (at most CBM_CHIPS_MAX_SIZE_M, 5120)")]
Plevel = Annotated[Literal["LEVEL2A", "LEVEL1C"], Query(description="LEVEL2A (LEVEL1C is not harvested: 400)")]
Onlylist = Annotated[bool, Query(description="only the product names ({\"chips\": [...]}), no chips")]
INDEX = {**ERRORS, 200: {"description": "{\"dates\": [...], \"chips\": [...]} (paths under the API root)",
                         "content": {"application/json": {}}}}


def _level(plevel: str) -> None:
    if plevel != "LEVEL2A":
        raise BadRequest("plevel: only Sentinel-2 LEVEL2A products are harvested here")


def locate(api: ApiContext, request: Request, lon: float, lat: float, start: str, end: str, card: str,
           chipsize: float, aoi: str | None = None) -> tuple[list[tuple[AoiConfig, chips.Scene]], list[str]]:
    """The products of ``card`` for chips at a point, from the catalogues of the named AOI or
    of every AOI the user may read that has the card; one per date key (the first AOI's by name).

    Returns
    -------
    (list of (AoiConfig, Scene), list of str)
        By date key; the AOIs searched.
    """
    t0, t1 = chips.date_window(start, end)
    chips.check_chipsize(chipsize, api.settings)
    cfgs = [api.aoi_cfg(aoi)] if aoi else [c for c in api.readable(request) if card in c.cards]
    found: dict[str, tuple[AoiConfig, chips.Scene]] = {}
    for cfg in cfgs:
        for sc in api.search(cfg.name, chips.select_scenes, lon, lat, t0, t1, card, chipsize, default=[]):
            found.setdefault(sc.date_key, (cfg, sc))
    return [found[k] for k in sorted(found)], [c.name for c in cfgs]


def _index(result: dict[str, Any], skipped: int) -> JSONResponse:
    return JSONResponse(result, headers={"X-CBM-Skipped": str(skipped)} if skipped else None)


def _raw(api: ApiContext, request: Request, lon: float, lat: float, start_date: str, end_date: str, band: str,
         chipsize: float, onlylist: bool, aoi: str | None) -> JSONResponse:
    jobs, searched = locate(api, request, lon, lat, start_date, end_date, "s2", chipsize, aoi)
    if onlylist:
        return JSONResponse({"chips": [f"{sc.reference}.SAFE" for _, sc in jobs]})
    chips.check_count(len(jobs), api.settings.chips_max_count, "rawChipByLocation")
    request_key = {"lon": lon, "lat": lat, "chipsize": chipsize, "aois": searched}
    return _index(*api.chips.raw(jobs, band, lon, lat, chipsize, request_key))


@router.get("/query/rawChipByLocation", summary="GeoTIFF chips of one Sentinel-2 band around a point",
            responses=INDEX)
def raw_chip_by_location(api: Api, request: Request, lon: Lon, lat: Lat, start_date: Start, end_date: End,
                         band: Annotated[S2Band, Query(description="one band of the JRC's list")],
                         chipsize: Chipsize = 1280.0, plevel: Plevel = "LEVEL2A", onlylist: Onlylist = False,
                         aoi: Aoi | None = None, year: Year = None, ptype: Ptype = None) -> JSONResponse:
    """One GeoTIFF per datatake sensed from ``start_date`` to ``end_date`` (included) whose
    footprint holds the point: a ``chipsize`` m square in the product's UTM CRS, native
    pixels and values (uint16 DN; reflectance = DN x scale + offset of the file; SCL
    classes), nodata 0. At most ``CBM_CHIPS_MAX_COUNT`` (24) chips: 400 above."""
    _level(plevel)
    return _raw(api, request, lon, lat, start_date, end_date, band, chipsize, onlylist,
                api.dataset(aoi, ptype, year) if aoi else None)


def _centroid(api: ApiContext, aoi: str, pid: int, year: int | None, ptype: str | None) -> tuple[str, float, float]:
    name = api.dataset(aoi, ptype, year)
    p = api.run(name, analyst.parcel_by_id, pid)
    return name, p["clon"][0], p["clat"][0]


@router.get("/query/rawChipByParcelID", summary="GeoTIFF chips of one Sentinel-2 band around a parcel",
            responses=INDEX)
def raw_chip_by_parcel_id(api: Api, request: Request, aoi: Aoi, pid: Pid, start_date: Start, end_date: End,
                          band: Annotated[S2Band, Query(description="one band of the JRC's list")],
                          chipsize: Chipsize = 1280.0, plevel: Plevel = "LEVEL2A", onlylist: Onlylist = False,
                          year: Year = None, ptype: Ptype = None) -> JSONResponse:
    """As ``rawChipByLocation`` at the parcel's centroid, from its AOI's catalogue."""
    _level(plevel)
    name, lon, lat = _centroid(api, aoi, pid, year, ptype)
    return _raw(api, request, lon, lat, start_date, end_date, band, chipsize, onlylist, name)


Bands = Annotated[str | None, Query(max_length=20, pattern=r"^[A-Z0-9]{2,3}(_[A-Z0-9]{2,3})*$",
                                    description="1 or 3 bands R_G_B (default B08_B04_B03); the first sets the grid")]
Lut = Annotated[str | None, Query(max_length=80, description=(
    "stretch: low_high percentiles per band (default 5_95; None too) or l1_h1_l2_h2_l3_h3 values"))]
PngFormat = Annotated[Literal["html", "json"], Query(description="html: the JRC's page; json: the chip index")]
PNGS = {**ERRORS, 200: {"description": "HTML page of the PNG chips, or with format=json the chip index",
                        "content": {"text/html": {}, "application/json": {}}}}


def _png(api: ApiContext, request: Request, lon: float, lat: float, start_date: str, end_date: str,
         bands: str, lut: str | None, chipsize: float, fmt: str, aoi: str | None) -> Response:
    names = bands.split("_")
    if len(names) not in (1, 3) or any(b not in chips.S2_CHIP_BANDS for b in names):
        raise BadRequest(f"band: {bands!r}: give 1 or 3 bands of {', '.join(chips.S2_CHIP_BANDS)} joined by _")
    jobs, searched = locate(api, request, lon, lat, start_date, end_date, "s2", chipsize, aoi)
    chips.check_count(len(jobs), api.settings.chips_max_count, "chipsByLocation")
    out, skipped = api.chips.png(jobs, names, lut, lon, lat, chipsize,
                                 {"lon": lon, "lat": lat, "chipsize": chipsize, "aois": searched})
    if fmt == "json":
        return _index({"dates": [d for d, _, _ in out], "chips": [p for _, p, _ in out]}, skipped)
    root = request.scope.get("root_path", "").rstrip("/")
    e = html.escape
    cells = [f"<td><label><img id='{e(d)}' src='{e(root + p)}'/><br/>{e(d)}</label></td>" for d, p, _ in out]
    rows = "".join("<tr>" + "".join(cells[i:i + 8]) + "</tr>" for i in range(0, len(cells), 8))
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>chips {e(bands)}</title></head>"
                        f"<body><table>{rows}</table></body></html>",
                        headers={"X-CBM-Skipped": str(skipped)} if skipped else None)


@router.get("/query/chipsByLocation", summary="Stretched PNG chips (1 or 3 Sentinel-2 bands) around a point",
            response_class=Response, responses=PNGS)
def chips_by_location(api: Api, request: Request, lon: Lon, lat: Lat, start_date: Start, end_date: End,
                      band: Bands = None, bands: Bands = None, lut: Lut = "5_95", chipsize: Chipsize = 1280.0,
                      plevel: Plevel = "LEVEL2A", format: PngFormat = "html", aoi: Aoi | None = None,
                      year: Year = None, ptype: Ptype = None) -> Response:
    """One PNG per datatake: the bands on the first band's grid, each stretched linearly to
    0-255 between the ``lut`` percentiles of the chip (the JRC's ``chipRipper2``), nodata
    black; ``chipsize`` 1280 m (the JRC's fixed size). ``band`` is the ``cbm`` client's name
    of ``bands``."""
    _level(plevel)
    return _png(api, request, lon, lat, start_date, end_date, bands or band or "B08_B04_B03", lut, chipsize,
                format, api.dataset(aoi, ptype, year) if aoi else None)


@router.get("/query/chipsByParcelID", summary="Stretched PNG chips around a parcel", response_class=Response,
            responses=PNGS)
def chips_by_parcel_id(api: Api, request: Request, aoi: Aoi, pid: Pid, start_date: Start, end_date: End,
                       band: Bands = None, bands: Bands = None, lut: Lut = "5_95", chipsize: Chipsize = 1280.0,
                       plevel: Plevel = "LEVEL2A", format: PngFormat = "html", year: Year = None,
                       ptype: Ptype = None) -> Response:
    """As ``chipsByLocation`` at the parcel's centroid, from its AOI's catalogue."""
    _level(plevel)
    name, lon, lat = _centroid(api, aoi, pid, year, ptype)
    return _png(api, request, lon, lat, start_date, end_date, bands or band or "B08_B04_B03", lut, chipsize,
                format, name)


class ChipsBatch(BaseModel):
    """``rawChipsBatch`` body: the named products x bands (exactly the JRC's keys)."""

    model_config = ConfigDict(extra="forbid")
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    tiles: list[Annotated[str, Field(pattern=r"^S2[A-D]_MSIL2A_\w{1,100}(\.SAFE)?$")]] = Field(min_length=1,
                                                                                              max_length=100)
    bands: list[S2Band] = Field(min_length=1, max_length=len(chips.S2_CHIP_BANDS))
    chipsize: float = Field(default=1280.0, gt=0)


class S1ChipsBatch(BaseModel):
    """``rawS1ChipsBatch`` body (exactly the JRC code's keys; its swagger shows the S2 body)."""

    model_config = ConfigDict(extra="forbid")
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    dates: list[Annotated[str, Field(max_length=10)]] = Field(min_length=2, max_length=2)
    chipsize: float = Field(default=1280.0, gt=0)
    plevel: Literal["CARD-BS", "CARD-COH6"] = "CARD-BS"


@router.post("/query/rawChipsBatch", summary="GeoTIFF chips of given Sentinel-2 products and bands", responses=INDEX)
def raw_chips_batch(api: Api, request: Request, batch: Annotated[ChipsBatch, Body()]) -> JSONResponse:
    """Chips ``<product>.<band>.tif`` for every product x band (at most
    ``CBM_CHIPS_MAX_BATCH``, 36); answer ``{"dates": ["<datatake>_<band>", ...], "chips":
    [...]}`` sorted by date. Products that no catalogue you may read holds: 404."""
    chips.check_chipsize(batch.chipsize, api.settings)
    chips.check_count(len(batch.tiles) * len(batch.bands), api.settings.chips_max_batch, "rawChipsBatch")
    refs = list(dict.fromkeys(t.removesuffix(".SAFE") for t in batch.tiles))
    found: dict[str, tuple[AoiConfig, chips.Scene]] = {}
    for cfg in api.readable(request):
        for sc in api.search(cfg.name, chips.scenes_by_reference, refs, default=[]):
            found.setdefault(sc.reference, (cfg, sc))
    missing = [r for r in refs if r not in found]
    if missing:
        raise NotFound(f"tiles: {', '.join(missing[:5])} not in the catalogues you may read")
    request_key = {"lon": batch.lon, "lat": batch.lat, "chipsize": batch.chipsize,
                   "aois": sorted({c.name for c, _ in found.values()})}
    return _index(*api.chips.batch([found[r] for r in refs], batch.bands, batch.lon, batch.lat, batch.chipsize,
                                   request_key))


@router.post("/query/rawS1ChipsBatch", summary="GeoTIFF chips (VV, VH) of Sentinel-1 CARD products in a window",
             responses=INDEX)
def raw_s1_chips_batch(api: Api, request: Request, batch: Annotated[S1ChipsBatch, Body()]) -> JSONResponse:
    """One CARD-BS (linear gamma0) or CARD-COH6 (coherence) product per day from
    ``dates[0]`` to ``dates[1]`` (included) whose footprint holds the point, both
    polarisations: ``<product>_VV.tif``, ``<product>_VH.tif`` (float32); answer ``{"dates":
    ["<sensing start>_VV", ...], "chips": [...]}``. At most ``CBM_CHIPS_MAX_BATCH`` chips."""
    card = chips.S1_PLEVELS[batch.plevel]
    jobs, searched = locate(api, request, batch.lon, batch.lat, batch.dates[0], batch.dates[1], card, batch.chipsize)
    chips.check_count(2 * len(jobs), api.settings.chips_max_batch, "rawS1ChipsBatch")
    request_key = {"lon": batch.lon, "lat": batch.lat, "chipsize": batch.chipsize, "aois": searched}
    return _index(*api.chips.batch(jobs, ["VV", "VH"], batch.lon, batch.lat, batch.chipsize, request_key))


def static_app(ctx: ApiContext):
    """The ``/static/tmp`` sub-application: chip and background files by their unguessable path, no login."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Route

    types = {".tif": "image/tiff", ".png": "image/png"}

    async def serve(request) -> Any:
        p = ctx.chips.cache.find(request.path_params["token"], request.path_params["name"])
        if p is None:
            return PlainTextResponse("no such chip (expired from the cache? ask for it again)", status_code=404)
        return FileResponse(p, media_type=types.get(p.suffix, "application/octet-stream"),
                            headers={"Cache-Control": "private, max-age=3600"})

    return Starlette(routes=[Route("/{token}/{name}", serve, methods=["GET", "HEAD"])])
