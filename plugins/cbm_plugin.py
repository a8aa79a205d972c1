"""Airflow plugin of cbm-airflow.

* :class:`CbmHook` resolves what tasks need from Airflow Connections: the results
  database URL (a ``postgres`` connection, default ``cbm_db``) and S3 credentials for
  the scene store (an ``aws`` connection, default ``cbm_s3``: login = access key,
  password = secret key, extra ``{"endpoint_url": "https://eodata.cloudferro.com"}``).
* A read-only status API in the api-server, ``/cbm/aois`` and ``/cbm/aois/{name}``:
  scenes per card, stage and status of each configured AOI (what operators ran as
  ``select card, status, count(*) from dias_catalogue group by 1, 2``).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseHook

log = logging.getLogger(__name__)


class CbmHook(BaseHook):
    """Connections of one AOI: results database and (optional) S3 scene store."""

    conn_name_attr = "db_conn_id"
    default_conn_name = "cbm_db"
    hook_name = "CbM"

    def __init__(self, db_conn_id: str = "cbm_db", s3_conn_id: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.db_conn_id = db_conn_id
        self.s3_conn_id = s3_conn_id

    def get_conn(self) -> str:
        return self.db_url()

    def db_url(self) -> str:
        """``postgresql://`` URL of the results database (never log it)."""
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.db_conn_id).get_uri()

    def s3_settings(self) -> tuple[dict[str, str], str | None]:
        """(boto3 credential kwargs, endpoint URL) from the S3 connection."""
        if not self.s3_conn_id:
            return {}, None
        conn = self.get_connection(self.s3_conn_id)
        creds = {}
        if conn.login:
            creds["aws_access_key_id"] = conn.login
        if conn.password:
            creds["aws_secret_access_key"] = conn.password
        extra = conn.extra_dejson or {}
        if extra.get("region_name"):
            creds["region_name"] = extra["region_name"]
        return creds, extra.get("endpoint_url") or conn.host or None


def _db_url(conn_id: str) -> str:
    """Database URL in the api-server (core process: secrets backends, env, metadata DB)."""
    from cbm_ops.db import db_url_from_env

    try:
        from airflow.models.connection import Connection

        return Connection.get_connection_from_secrets(conn_id).get_uri()
    except Exception:  # noqa: BLE001 - outside Airflow (tests) fall back to the environment
        return db_url_from_env(conn_id)


def create_status_app(*, require_auth: bool = True):
    """FastAPI app with the AOI status endpoints (mounted at ``/cbm``).

    Requests need an Airflow login (the UI's session cookie or an API token,
    ``Authorization: Bearer <token>`` from ``POST /auth/token``); ``require_auth=False``
    is for tests only.
    """
    from fastapi import Depends, FastAPI, HTTPException

    from cbm_ops.config import load_all
    from cbm_ops.db import ConfigError
    from cbm_ops.queue import status_counts

    deps = []
    if require_auth:
        from airflow.api_fastapi.core_api.security import requires_authenticated

        deps = [Depends(requires_authenticated())]
    app = FastAPI(title="cbm-airflow status", description="Scenes per card, stage and status per AOI",
                  dependencies=deps)

    def status(cfg) -> dict[str, Any]:
        rows = status_counts(_db_url(cfg.db_conn_id), cfg)
        return {"aoi": cfg.name, "schema": cfg.schema,
                "stages": [{"card": c, "stage": s, "status": st, "scenes": n} for c, s, st, n in rows]}

    @app.get("/aois")
    def aois() -> list[dict[str, Any]]:
        try:
            return [status(cfg) for cfg in load_all().values()]
        except ConfigError as exc:
            raise HTTPException(status_code=500, detail=str(exc)) from None

    @app.get("/aois/{name}")
    def aoi(name: str) -> dict[str, Any]:
        cfgs = load_all()
        if name not in cfgs:
            raise HTTPException(status_code=404, detail=f"no AOI {name!r}")
        return status(cfgs[name])

    return app


class CbmPlugin(AirflowPlugin):
    name = "cbm_airflow"
    fastapi_apps = [{"app": create_status_app(), "url_prefix": "/cbm", "name": "CbM scene status"}]
