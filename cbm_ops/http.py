"""HTTP sessions of the project: urllib3 ``Retry`` on a requests session (no hand-rolled retry loop)."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


def retrying_session(retries: int, methods: frozenset[str] = frozenset(["GET"]),
                     session: requests.Session | None = None) -> requests.Session:
    """A requests session that retries connection errors and HTTP 429/5xx with exponential
    back-off (urllib3 ``Retry``, 1 s factor), honouring ``Retry-After``; the last answer is
    returned (not raised) when the retries are used up."""
    session = session or requests.Session()
    retry = Retry(total=retries, backoff_factor=1.0, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=methods, respect_retry_after_header=True, raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session
