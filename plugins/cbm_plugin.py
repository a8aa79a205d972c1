"""Airflow plugin of cbm-airflow.

* :class:`CbmHook` resolves what tasks need from Airflow Connections: the results
  database URL (a ``postgres`` connection, default ``cbm_db``) and S3 credentials for
  the scene store (an ``aws`` connection, default ``cbm_s3``: login = access key,
  password = secret key, extra ``{"endpoint_url": "https://eodata.cloudferro.com"}``).
* The HTTP API of the ``cbm_api`` package in the api-server at ``/cbm``, behind Airflow's login:
  the AOI status (``/cbm/`` page, ``/cbm/aois``, ``/cbm/aois/{name}``: scenes per card,
  stage and status, what operators ran as ``select card, status, count(*) from
  dias_catalogue group by 1, 2``) and the analysts' parcel API ``/cbm/query/...``
  (docs at ``/cbm/docs``) with the parcel viewer (``/cbm/viewer/``: map, time series,
  chips; ``cbm_api/viewer.py``), all linked from the UI's Plugins menu.
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


def create_status_app(*, require_auth: bool = True):
    """FastAPI app mounted at ``/cbm``: AOI status and the parcel API (see the ``cbm_api`` package).

    Requests need an Airflow login (the UI's session cookie or an API token,
    ``Authorization: Bearer <token>`` from ``POST /auth/token``); ``require_auth=False``
    is for tests only.
    """
    from cbm_api import create_app

    return create_app(auth="airflow" if require_auth else "none")


class CbmPlugin(AirflowPlugin):
    name = "cbm_airflow"
    fastapi_apps = [{"app": create_status_app(), "url_prefix": "/cbm", "name": "CbM status and parcel API"}]
    # Airflow 3 UI: entries of the "Plugins" menu, shown inside the UI (iframe at /plugin/<url_route>)
    external_views = [
        {"name": "CbM scene status", "href": "/cbm/", "url_route": "cbm-status", "destination": "nav",
         "category": "CbM"},
        {"name": "CbM parcel API", "href": "/cbm/docs", "url_route": "cbm-api", "destination": "nav",
         "category": "CbM"},
        {"name": "CbM parcel viewer", "href": "/cbm/viewer/", "url_route": "cbm-viewer", "destination": "nav",
         "category": "CbM"},
    ]
