"""Airflow plugin of cbm-airflow.

* :class:`CbmHook` (``cbm_hook.py``, re-exported here) resolves what tasks need from Airflow
  Connections: the results database URL and S3 credentials for the scene store.
* The HTTP API of the ``cbm_api`` package in the api-server at ``/cbm``, behind Airflow's login:
  the AOI status (``/cbm/`` page, ``/cbm/aois``, ``/cbm/aois/{name}``: scenes per card,
  stage and status, what operators ran as ``select card, status, count(*) from
  dias_catalogue group by 1, 2``) and the analysts' parcel API ``/cbm/query/...``
  (docs at ``/cbm/docs``) with the parcel viewer (``/cbm/viewer/``: map, time series,
  chips; ``cbm_api/viewer.py``), all linked from the UI's Plugins menu.
"""

from __future__ import annotations

import logging

from airflow.plugins_manager import AirflowPlugin
from cbm_hook import CbmHook

__all__ = ["CbmHook", "CbmPlugin", "create_status_app"]

log = logging.getLogger(__name__)


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
