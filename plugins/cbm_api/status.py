"""Status routes: scenes per card, stage and status of every AOI (JSON and an HTML page).

What operators ran as ``select card, status, count(*) from dias_catalogue group by 1, 2``.
"""

import html
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from cbm_ops.config import AoiConfig
from cbm_ops.errors import BadRequest, ConfigError

from .deps import AOI_PATTERN, ERRORS, STATUS_ERRORS, Api, ApiContext

router = APIRouter(tags=["status"])


def status(api: ApiContext, cfg: AoiConfig) -> dict[str, Any]:
    """Scenes per card, stage and status of one AOI."""
    from cbm_ops.queue import status_counts

    rows = status_counts(api.db_url(cfg), cfg)
    return {"aoi": cfg.name, "schema": cfg.schema,
            "stages": [{"card": c, "stage": s, "status": st, "scenes": n} for c, s, st, n in rows]}


@router.get("/aois", summary="Scenes per card, stage and status of every AOI", responses=STATUS_ERRORS)
def list_aois(api: Api) -> list[dict[str, Any]]:
    try:
        return [status(api, cfg) for cfg in api.aois().values()]
    except ConfigError as exc:
        raise BadRequest(f"AOI configuration: {exc}") from None


@router.get("/aois/{name}", summary="Scenes per card, stage and status of one AOI", responses=ERRORS)
def one_aoi(api: Api, name: Annotated[str, PathParam(pattern=AOI_PATTERN, max_length=63)]) -> dict[str, Any]:
    return status(api, api.aoi_cfg(name))


@router.get("/", response_class=HTMLResponse, summary="Status page (HTML)", responses=STATUS_ERRORS)
def index(api: Api, request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    e = html.escape
    parts = [f"<h1>cbm-airflow</h1><p><a href='{e(root)}/docs'>Parcel API documentation</a> · "
             f"<a href='{e(root)}/aois'>status as JSON</a></p>"]
    try:
        cfgs = api.aois()
    except ConfigError as exc:
        parts.append(f"<p>AOI configuration error: {e(str(exc))}</p>")
        cfgs = {}
    for cfg in cfgs.values():
        try:
            st = status(api, cfg)["stages"]
        except Exception as exc:  # noqa: BLE001 - one unreachable AOI must not hide the others
            parts.append(f"<h2>{e(cfg.name)}</h2><p>unavailable: {e(type(exc).__name__)}</p>")
            continue
        body = "".join(f"<tr><td>{e(r['card'])}</td><td>{e(r['stage'])}</td><td>{e(r['status'])}</td>"
                       f"<td style='text-align:right'>{r['scenes']}</td></tr>" for r in st)
        parts.append(f"<h2>{e(cfg.name)}</h2><p>{e(cfg.description)} (schema {e(cfg.schema)})</p>"
                     "<table border=1 cellpadding=3 style='border-collapse:collapse'>"
                     f"<tr><th>card</th><th>stage</th><th>status</th><th>scenes</th></tr>{body}</table>")
    return HTMLResponse("<!doctype html><html><head><meta charset='utf-8'><title>cbm-airflow status</title>"
                        "</head><body style='font-family:sans-serif'>" + "".join(parts) + "</body></html>")
