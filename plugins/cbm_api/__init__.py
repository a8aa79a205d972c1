"""cbm-airflow HTTP API: AOI status and the analysts' parcel queries.

One FastAPI app, mounted by the Airflow plugin (``cbm_plugin.py``) at ``/cbm`` in the
api-server behind Airflow's login, or run on its own for a separate frontend host::

    CBM_DB_URL=postgresql://... CBM_API_TOKENS=<token> \\
        uvicorn --app-dir plugins --factory cbm_api:create_standalone_app --host 0.0.0.0 --port 8001

Routes (documented at ``/docs``, schema at ``/openapi.json``):

* ``/`` a status page (HTML), ``/aois`` and ``/aois/{name}`` scenes per card, stage and status;
* ``/query/parcelById``, ``parcelByLocation``, ``parcelsByPolygon``, ``parcelTimeSeries``,
  ``parcelPeers`` in the shape of the JRC RESTful API (JSON objects of equal-length column
  lists; ``format=csv`` for CSV), ``parcelPlot`` (PNG), ``observation`` (one scene with
  the lineage and quality of its stages);
* the rest of the JRC RESTful API, so that the JRC's ``cbm`` client works unchanged: its
  spellings (``parcelByID``, ``parcelByPolygon``, ``backgroundByParcelId``), ``info``,
  ``weatherTimeSeries``, ``backgroundByLocation``/``ByParcelID``, the image chips
  (``rawChipByLocation``, ``rawChipByParcelID``, ``chipsByLocation``, ``chipsByParcelID``,
  POST ``rawChipsBatch``, ``rawS1ChipsBatch``) and their files under ``/static/tmp``.

The app is assembled from routers (FastAPI's "bigger applications" layout) that share the
dependencies of :mod:`.deps` (AOI lookup, database, scene stores, parameter types, error
answers): :mod:`.status` (``/``, ``/aois``), :mod:`.queries` (``/query/...``), :mod:`.jrc`
(the JRC's other spellings and routes), :mod:`.chips` (image chips, and the file server
mounted at ``/static/tmp``), :mod:`.viewer` (``/viewer/...``); :mod:`.auth` holds the standalone login.
* ``/viewer/`` the parcel viewer: its page, vector tiles and JSON (:mod:`.viewer`).

Bad input answers 400 with ``{"detail": "<parameter>: <what is wrong>"}``, unknown AOIs,
parcels or scenes 404; every query is a file of ``include/sql`` with bound values, run in
a read-only transaction with a statement timeout. The query logic is :mod:`cbm_ops.analyst`.

Authentication (``auth``):

* ``airflow``: Airflow's ``requires_authenticated()`` (UI session cookie or
  ``Authorization: Bearer <JWT>`` from ``POST /auth/token``);
* ``standalone``: ``Authorization: Bearer <token>`` with a token of ``CBM_API_TOKENS`` or
  HTTP basic with a user of ``CBM_API_USERS_FILE`` (the JRC's users file: PBKDF2 keys and
  the AOIs each user may read) or ``CBM_API_USERS`` (comma-separated hashed records or
  ``user:password`` percent-encoded); without any the app refuses to start unless
  ``CBM_API_NO_AUTH=1`` (a local, single-user setup). ``CBM_API_CORS_ORIGINS`` allows
  browser frontends on other origins.

Chip and background files (``/static/tmp/<dir>/<file>``) are served without a login, as the
JRC's were (its client downloads them without credentials): their directory names are
HMACs that only a caller allowed the request learns.
* ``none``: tests only.
"""

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from cbm_ops.config import AoiConfig, ApiSettings

log = logging.getLogger(__name__)


def create_app(*, auth: Literal["airflow", "standalone", "none"] = "airflow",
               aois: Callable[[], dict] | None = None, db_url: Callable[[AoiConfig], str] | None = None,
               tokens: list[str] | None = None, users: dict[str, Any] | None = None,
               cors_origins: list[str] | None = None, store_for: Callable[[AoiConfig], Any] | None = None,
               settings: ApiSettings | None = None):
    """The FastAPI app: status routes, the parcel query routes and the rest of the JRC API.

    Parameters
    ----------
    auth : {"airflow", "standalone", "none"}
        See the module docstring.
    aois : callable, optional
        Returns the AOI configurations by name (default: the AOI files, re-read on change).
    db_url : callable, optional
        AoiConfig -> database URL (default: the Airflow Connection ``db_conn_id`` for
        ``auth="airflow"``, else ``CBM_DB_URL`` / ``AIRFLOW_CONN_<ID>``).
    tokens, users : optional
        Standalone credentials (default: ``CBM_API_TOKENS``, ``CBM_API_USERS``,
        ``CBM_API_USERS_FILE``); users as ``{name: password}`` or ``{name: cbm_ops.users.User}``.
    cors_origins : list of str, optional
        Origins allowed by CORS (default ``CBM_API_CORS_ORIGINS``).
    store_for : callable, optional
        AoiConfig -> scene store for the chips (default: the Airflow connection of
        ``store.conn_id`` for ``auth="airflow"``, else the environment).
    settings : ApiSettings, optional
        Chip cache and limits (default: from the environment, ``CBM_CHIPS_*``).

    Raises
    ------
    RuntimeError
        ``auth="standalone"`` without any credential configured.
    """
    from fastapi import FastAPI

    from . import chips, deps, jrc, queries, status, viewer

    app = FastAPI(
        title="cbm-airflow parcel API",
        description=("Parcel attributes and per-parcel Sentinel time series (signatures and SCL histograms) "
                     "of the CbM backend, in the shape of the JRC RESTful API; AOI processing status. "
                     "See docs/analyst-api.md."),
        version="1", dependencies=_auth_dependencies(auth, tokens, users))
    app.state.cbm = deps.ApiContext(
        aois or deps.AoiCache(), db_url or deps.UrlCache(deps.airflow_db_url if auth == "airflow" else deps.env_db_url),
        store_for or (deps.airflow_store if auth == "airflow" else deps.default_store), settings)
    if cors_origins is None:
        cors_origins = [o.strip() for o in os.environ.get("CBM_API_CORS_ORIGINS", "").split(",") if o.strip()]
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET"],
                           allow_headers=["Authorization"])
    _add_exception_handlers(app)
    app.include_router(status.router)
    app.include_router(queries.router)
    app.include_router(jrc.router)
    app.include_router(chips.router)
    app.mount(chips_static_prefix(), chips.static_app(app.state.cbm))
    app.state.viewer = viewer.ViewerState(app.state.cbm)
    app.include_router(viewer.router, prefix="/viewer")
    _openapi_without_422(app, deps.AUTH_ERRORS[auth])
    return app


def chips_static_prefix() -> str:
    from cbm_ops.analyst.chips import STATIC_PREFIX

    return STATIC_PREFIX


def _auth_dependencies(auth: str, tokens: list[str] | None, users: dict[str, Any] | None) -> list:
    """The app-wide login dependency of an ``auth`` mode.

    Raises
    ------
    RuntimeError
        ``standalone`` without credentials, or with an invalid ``CBM_API_USERS`` entry or users file.
    ValueError
        An unknown mode.
    """
    from fastapi import Depends

    if auth == "airflow":
        from airflow.api_fastapi.core_api.security import requires_authenticated

        return [Depends(requires_authenticated())]
    if auth == "standalone":
        from cbm_ops.errors import ConfigError

        from .auth import as_users, credentials_from_env, standalone_auth

        try:
            env_tokens, env_users = credentials_from_env()
        except ConfigError as exc:      # a bad CBM_API_USERS entry or users file: the app does not start
            raise RuntimeError(str(exc)) from None
        tokens = env_tokens if tokens is None else tokens
        logins = env_users if users is None else as_users(users)
        if not tokens and not logins:
            raise RuntimeError("the standalone API needs credentials: set CBM_API_TOKENS (bearer tokens), "
                               "CBM_API_USERS (user:password) and/or CBM_API_USERS_FILE (JRC users file), or "
                               "CBM_API_NO_AUTH=1 for a local single-user setup")
        return [Depends(standalone_auth(tokens, logins))]
    if auth != "none":
        raise ValueError(f"auth: {auth!r} is not airflow, standalone or none")
    return []


def _add_exception_handlers(app) -> None:
    """400 for invalid parameters (naming them, not FastAPI's 422), 404, 503 for the database."""
    import psycopg
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from psycopg_pool import PoolTimeout

    from cbm_ops import analyst
    from cbm_ops.errors import BadRequest, Forbidden, NotFound, UpstreamError

    def invalid(request, exc: RequestValidationError) -> JSONResponse:
        errs = []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ())]
            name = loc[1] if len(loc) > 1 and loc[0] in ("query", "path") else ".".join(loc) or "request"
            if len(loc) > 2:
                name += "".join(f"[{x}]" for x in loc[2:])
            got = e.get("input")
            errs.append({"parameter": name, "msg": str(e.get("msg", "")), "type": str(e.get("type")),
                         "input": got if isinstance(got, str | int | float) and len(str(got)) <= 100 else None})
        detail = "; ".join(f"{e['parameter']}: {e['msg']}" + (f" (got {e['input']!r})" if e["input"] is not None
                                                             else "") for e in errs) or "invalid request"
        return JSONResponse({"detail": detail, "errors": errs}, status_code=400)

    def slow(request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"the query took longer than {analyst.STATEMENT_TIMEOUT}; narrow it"},
                            status_code=503)

    def down(request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return JSONResponse({"detail": "the results database is unavailable; retry later"}, status_code=503)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(BadRequest, lambda request, exc: JSONResponse({"detail": str(exc)}, status_code=400))
    app.add_exception_handler(NotFound, lambda request, exc: JSONResponse({"detail": str(exc)}, status_code=404))
    app.add_exception_handler(Forbidden, lambda request, exc: JSONResponse({"detail": str(exc)}, status_code=403))
    app.add_exception_handler(UpstreamError, lambda request, exc: JSONResponse({"detail": str(exc)}, status_code=502))
    app.add_exception_handler(psycopg.errors.QueryCanceled, slow)
    app.add_exception_handler(PoolTimeout, down)
    app.add_exception_handler(psycopg.OperationalError, down)


def _openapi_without_422(app, auth_errors: dict[int, str]) -> None:
    """The OpenAPI schema documents 400 (the answer to invalid input) instead of FastAPI's 422,
    and the login's answers (401, 403) on every operation."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in schema.get("paths", {}).values():
            for op in path.values():
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                for code, what in auth_errors.items():
                    responses.setdefault(str(code), {"description": what, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
        comps = schema.get("components", {}).get("schemas", {})
        comps.pop("HTTPValidationError", None)
        comps.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def create_standalone_app():
    """The API for ``uvicorn --factory`` (own authentication from the environment, pooled connections).

    Raises
    ------
    RuntimeError
        Without ``CBM_API_TOKENS``/``CBM_API_USERS``/``CBM_API_USERS_FILE`` unless
        ``CBM_API_NO_AUTH=1``.
    """
    no_auth = os.environ.get("CBM_API_NO_AUTH", "").lower() in ("1", "true", "yes")
    if no_auth:
        log.warning("CBM_API_NO_AUTH is set: the parcel API answers anyone who can reach it")
    return create_app(auth="none" if no_auth else "standalone")


def main(argv: list[str] | None = None) -> int:
    """``python -m cbm_api [--host H] [--port P]`` (from ``plugins/``): the standalone API with uvicorn."""
    import argparse
    import sys

    import uvicorn

    ap = argparse.ArgumentParser(description="cbm-airflow parcel API (standalone)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    uvicorn.run("cbm_api:create_standalone_app", factory=True, host=args.host, port=args.port)
    return 0
