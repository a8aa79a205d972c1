"""The Airflow hook of cbm-airflow: what tasks and the api-server need from Airflow Connections.

:class:`CbmHook` gives the results database URL (a ``postgres`` connection, default ``cbm_db``)
and S3 credentials for the scene store (an ``aws`` connection, default ``cbm_s3``: login =
access key, password = secret key, extra ``{"endpoint_url": "https://eodata.cloudferro.com"}``).
Its own module, so that the API package (``cbm_api``) and the DAGs use it without importing
the plugin that mounts the API (``cbm_plugin.py``).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook


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
