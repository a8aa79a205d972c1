"""The parcel viewer: a web page for analysts and the vector tiles it draws.

A FastAPI ``APIRouter`` included by the parcel API (``create_app``) under ``/viewer``, so it
runs wherever the API runs, behind the same login: in the Airflow api-server at
``/cbm/viewer/`` (also a page of the UI's Plugins menu, ``cbm_plugin.py``) and in the
standalone app at ``/viewer/``. ``?aoi=NAME&pid=N`` opens a parcel. Its queries are
:mod:`cbm_ops.analyst.viewer`.

Routes (all GET):

* ``/viewer/``: the page (``web/viewer``, built with ``npm run build`` into
  ``web/viewer/dist``, or ``CBM_VIEWER_DIST``); ``/viewer/assets/<file>`` its script and style;
* ``/viewer/api/aois``, ``/viewer/api/aoi?aoi=``, ``/viewer/api/outline?aoi=``: the AOIs,
  what the page needs to open one (extent, years, crops, bands, results version), its outline;
* ``/viewer/tiles/{year}/{z}/{x}/{y}.pbf?aoi=NAME``: Mapbox Vector Tiles of the parcels with
  their colour attributes (``cbm_ops.analyst.viewer``), from an in-process LRU cache keyed by AOI,
  results version, year and tile; ``?v=<version>`` (the page adds it) makes the answer
  cacheable by the browser for a day, since a new version gives new URLs.

The time series, peers and parcel lookups are the API's own ``/query/...`` routes; the image
chips are the JRC chip routes of the API.
"""

# No "from __future__ import annotations": FastAPI reads the annotations of the routes.

import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from cbm_ops import analyst
from cbm_ops.analyst import viewer
from cbm_ops.config import AoiConfig
from cbm_ops.errors import BadRequest, ConfigError

from .deps import AOI_PATTERN, Api, ApiContext

log = logging.getLogger(__name__)

VERSION_TTL_S = 5.0                      # how long a results version is trusted before it is re-read
# a stale AOI-year summary is refreshed at most this often: results change with every stage claim
# while an extraction runs, and a refresh is one pass over the year's sigs and hists (make bench:
# 105 s for 200k parcels x 73 dates on 2 cores); the colours then lag the results by at most this
SUMMARY_INTERVAL_S = float(os.environ.get("CBM_VIEWER_SUMMARY_INTERVAL_S", "1800"))
_ASSET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".map": "application/json", ".svg": "image/svg+xml",
          ".png": "image/png", ".woff2": "font/woff2", ".json": "application/json", ".html": "text/html"}


def dist_dir() -> Path:
    """Directory of the built page: ``CBM_VIEWER_DIST``, else ``web/viewer/dist`` of the checkout."""
    env = os.environ.get("CBM_VIEWER_DIST")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "web" / "viewer" / "dist"


class ViewerState:
    """What the viewer keeps per API process (``app.state.viewer``): the tile cache, the results
    version of each AOI (re-read after :data:`VERSION_TTL_S`), the AOI answers per version, and
    the background refreshes of the AOI-year summaries (one at a time, at most every
    :data:`SUMMARY_INTERVAL_S`; their last failure)."""

    def __init__(self, api: ApiContext, cache_mb: float | None = None):
        if cache_mb is None:
            cache_mb = float(os.environ.get("CBM_VIEWER_TILE_CACHE_MB", "64"))
        self.api = api
        self.cache = viewer.TileCache(int(cache_mb * 2**20))
        self.versions: dict[str, tuple[float, str]] = {}
        self.infos: dict[tuple[str, str, int], tuple[Any, dict[str, Any]]] = {}
        self.attempts: dict[tuple[str, int], float] = {}
        self.running: dict[tuple[str, int], threading.Thread] = {}
        self.failures: dict[tuple[str, int], str] = {}
        self.lock = threading.Lock()

    def read(self, cfg: AoiConfig, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(conn, cfg, ...)`` in a read-only transaction of the AOI's database."""
        return self.api.run(cfg.name, fn, *args, **kwargs)

    def version(self, cfg: AoiConfig) -> str:
        """The AOI's results version (cached for :data:`VERSION_TTL_S`)."""
        hit = self.versions.get(cfg.name)
        if hit and time.monotonic() - hit[0] < VERSION_TTL_S:
            return hit[1]
        v = self.read(cfg, viewer.results_version)
        self.versions[cfg.name] = (time.monotonic(), v)
        return v

    def info(self, cfg: AoiConfig) -> dict[str, Any]:
        """:func:`cbm_ops.analyst.viewer.aoi_info`, per results version and AOI configuration (a
        changed AOI file is a new object; the entry holds it, so its id is not reused)."""
        key = (cfg.name, self.version(cfg), id(cfg))
        got = self.infos.get(key)
        if got is not None:
            return got[1]
        meta = self.read(cfg, viewer.aoi_info)
        with self.lock:
            self._forget(cfg.name)
            self.infos[key] = (cfg, meta)
        return meta

    def _forget(self, name: str) -> None:
        for k in [k for k in self.infos if k[0] == name]:
            self.infos.pop(k, None)

    def tile_version(self, meta: dict[str, Any], year: int) -> str:
        st = meta["summaries"].get(year)
        return f"{meta['version']}.{viewer.short_hash(st['refreshed_at']) if st else 'live'}"

    def ensure_summary(self, cfg: AoiConfig, year: int, meta: dict[str, Any]) -> None:
        """Start a background refresh of a missing or stale AOI-year summary (rate-limited)."""
        st = meta["summaries"].get(year)
        if st is not None and st["version"] == meta["version"]:
            return
        key = (cfg.name, year)
        with self.lock:
            if key in self.running or time.monotonic() - self.attempts.get(key, -1e9) < SUMMARY_INTERVAL_S:
                return
            self.attempts[key] = time.monotonic()
            t = threading.Thread(target=self._refresh, args=(cfg, year), daemon=True,
                                 name=f"cbm-viewer-summary-{cfg.name}-{year}")
            self.running[key] = t
        t.start()

    def _refresh(self, cfg: AoiConfig, year: int) -> None:
        key = (cfg.name, year)
        try:
            done = viewer.refresh_summary(self.api.db_url(cfg), cfg, year)
            if done:
                log.info("viewer summary of %s %s refreshed: %s parcels, %.1f s", cfg.name, year, done["parcels"],
                         done["seconds"])
            self.failures.pop(key, None)
        except Exception as exc:  # noqa: BLE001 - e.g. a read-only role: tiles stay live, the page says why
            self.failures[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            log.warning("viewer summary of %s %s not refreshed (tiles computed live): %s", cfg.name, year,
                        self.failures[key])
        finally:
            with self.lock:
                self._forget(cfg.name)
                self.running.pop(key, None)


def viewer_state(request: Request) -> ViewerState:
    return request.app.state.viewer


State = Annotated[ViewerState, Depends(viewer_state)]
Aoi = Annotated[str, Query(pattern=AOI_PATTERN, max_length=63, description="AOI name")]
_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}}}}
router = APIRouter(tags=["viewer"], responses={
    400: {**_ERROR, "description": "invalid parameter (the detail names it)"},
    404: {**_ERROR, "description": "unknown AOI"},
    503: {**_ERROR, "description": "database unavailable or query over its time limit"}})


# ------------------------------------------------------------- the page
@router.get("", include_in_schema=False)
def viewer_root() -> Response:
    return RedirectResponse("viewer/", status_code=307)


@router.get("/", include_in_schema=False)
def page() -> Response:
    index = dist_dir() / "index.html"
    if not index.is_file():
        return PlainTextResponse(
            f"the parcel viewer is not built ({index} is missing): run `make viewer` "
            "(npm ci && npm run build in web/viewer) or set CBM_VIEWER_DIST", status_code=503)
    return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/assets/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    path = dist_dir() / "assets" / name
    if not _ASSET.match(name) or not path.is_file():
        return PlainTextResponse(f"no viewer asset {name[:80]!r}", status_code=404)
    return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})


# ------------------------------------------------------------- JSON for the page
@router.get("/api/aois", summary="The AOIs the viewer can open")
def list_aois(api: Api) -> list[dict[str, str]]:
    try:
        cfgs = api.aois()
    except ConfigError as exc:
        raise BadRequest(f"AOI configuration: {exc}") from None
    return [{"name": c.name, "description": c.description} for c in cfgs.values()]


@router.get("/api/aoi", summary="One AOI for the viewer: extent, years, crops, bands, results version")
def one_aoi(api: Api, state: State, aoi: Aoi) -> JSONResponse:
    """See ``cbm_ops.analyst.viewer.aoi_info``; ``tile_versions`` per year, the summaries being
    refreshed and the last refresh errors."""
    cfg = api.aoi_cfg(aoi)
    meta = state.info(cfg)
    out = {**meta, "tile_versions": {y: state.tile_version(meta, int(y)) for y in meta["years"]},
           "refreshing": sorted(y for (name, y) in state.running if name == cfg.name),
           "summary_errors": {y: msg for (name, y), msg in state.failures.items() if name == cfg.name}}
    return JSONResponse(out, headers={"Cache-Control": "no-cache"})


@router.get("/api/outline", summary="AOI outline (GeoJSON geometry, EPSG:4326)")
def aoi_outline(api: Api, aoi: Aoi) -> JSONResponse:
    return JSONResponse(api.run(aoi, viewer.outline))


@router.get("/api/cache", summary="Tile cache counters of this process")
def cache_stats(state: State) -> dict[str, int]:
    return state.cache.stats()


# ------------------------------------------------------------- tiles
@router.get("/tiles/{year}/{z}/{x}/{y}.pbf", summary="Vector tile of the AOI's parcels (MVT)",
            response_class=Response,
            responses={200: {"content": {"application/vnd.mapbox-vector-tile": {}},
                             "description": "Mapbox Vector Tile, layer 'parcels'"}})
def tile(api: Api, state: State, request: Request, aoi: Aoi,
         year: Annotated[int, PathParam(ge=analyst.YEAR_RANGE[0], le=analyst.YEAR_RANGE[1])],
         z: Annotated[int, PathParam(ge=0, le=viewer.MAX_ZOOM)],
         x: Annotated[int, PathParam(ge=0)], y: Annotated[int, PathParam(ge=0)],
         v: Annotated[str | None, Query(max_length=40, description="results version (cache key)")] = None
         ) -> Response:
    """Features ``pid``, ``crop``, ``s2_obs``, ``s2_clear``, ``last_clear`` (day of the
    year), ``quarantined`` of the parcels in the tile; see docs/analyst-api.md. The first
    tile of a year whose summary is missing or stale starts its refresh in the background;
    meanwhile tiles use the previous summary, or compute the attributes live."""
    cfg = api.aoi_cfg(aoi)
    if x >= 2 ** z or y >= 2 ** z:
        raise BadRequest(f"x, y: tile {z}/{x}/{y} is outside the zoom-{z} pyramid")
    meta = state.info(cfg)
    if z < meta["min_zoom"]:
        raise BadRequest(f"z: parcels of AOI {cfg.name} are drawn from zoom {meta['min_zoom']} on")
    state.ensure_summary(cfg, year, meta)
    ver = state.tile_version(meta, year)
    etag = f'"{ver}-{year}-{z}-{x}-{y}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400, immutable" if v == ver
               else "private, no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    key = (cfg.name, ver, year, z, x, y)
    data = state.cache.get(key)
    headers["X-CBM-Cache"] = "hit" if data is not None else "miss"
    if data is None:
        data = b"" if meta["bounds"] is None else state.read(
            cfg, viewer.parcel_tile, z, x, y, year, meta["srid"], meta["bounds"], live=year not in meta["summaries"])
        state.cache.put(key, data)
    return Response(data, media_type="application/vnd.mapbox-vector-tile", headers=headers)
