"""Order missing Sentinel-1 CARD products from the CDSE On-Demand Processing (ODP) API.

CDSE keeps no Sentinel-1 CARD archive: CARD-BS is made on demand from IW GRDH products,
CARD-COH6 from IW SLC products, through the ODP API (CDSE documentation "On-Demand
Production API"; ``../shared/data/catalogue-responses/APIS.md`` section 5). This module:

1. :func:`plan` searches the configured catalogue (OData by default; resto for other DIAS)
   for the source products (``ordering.source_product_types``: IW_GRDH_1S, IW_SLC__1S) over
   the AOI and window and keeps the *complement*: those without a CARD product in
   ``dias_catalogue`` and not already ordered;
2. :func:`submit` places one ProductionOrder per source product with the card's workflow,
   within the quotas (``ordering.monthly_quota`` products per calendar month, UTC, and
   ``ordering.max_concurrent`` items queued or in progress), and records them in
   ``card_orders`` / ``card_order_items``;
3. :func:`poll` reads each open order's status (``queued``, ``in_progress``, ``completed``,
   ``failed``, ``cancelled``) and, once completed, the name of its output product;
4. :func:`~cbm_ops.harvest.catalogue.reconcile_orders` (run by every harvest) marks an item
   ``harvested`` once its CARD product is in ``dias_catalogue``: outputs of the standard
   workflows are published to the CDSE repository and picked up by the next harvest.

Matching rule (source product -> CARD product): the CARD products are named after their
source product plus ``_CARD_BS`` / ``_CARD_COH6`` (``naming``). Two names match when their
mission, sensing start, sensing stop, absolute orbit and datatake id are equal
(:func:`s1_identity`); the trailing 4-character unique id is left out, as it changes when
ESA republishes a product. For CARD-COH6 it is ASSUMED that the product carries the name of
the SLC it was ordered for (the pair's second image is chosen by the service).

HTTP API (what is documented and what is assumed: docs/harvest.md, "CARD ordering"): an
access token from the CDSE identity service (``ordering.token_url``, password grant,
``client_id`` cdse-public; renewed with its refresh token), sent as ``Authorization:
Bearer``; ``POST {url}/ProductionOrder/OData.CSC.Order`` with ``{"WorkflowName",
"InputProductReference": {"Reference": "<name>.SAFE"}, "Priority", "Name"}`` answers the
order (``value.Id``, ``value.Status``); ``GET {url}/ProductionOrders(<id>)`` its status;
``GET {url}/ProductionOrder(<id>)/Product`` its output; ``GET {url}/Workflows`` the
workflows. Credentials come from the caller (an Airflow connection in the DAG, the
environment in the CLI) and are never logged; a POST is never repeated automatically.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import shapely
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..config import AoiConfig
from ..db import dicts, one, q, transaction
from ..errors import ConfigError, HarvestError, OrderAuthError, OrderError, OrderRefused
from .catalogue import aoi_geometry, make_source, reconcile_orders
from .records import HarvestReport
from .sources import Query

log = logging.getLogger(__name__)

# mission, mode, product type, level/class/pol, start, stop, absolute orbit, datatake id, unique id
_S1 = re.compile(r"^(S1[A-D])_(\w{2})_(\w{4})_(\w{4})_(\d{8}T\d{6})_(\d{8}T\d{6})_(\d{6})_([0-9A-F]{6})_([0-9A-F]{4})")
# Source product class per card: IW GRD high resolution (CARD-BS), IW SLC (CARD-COH6).
SOURCE_CLASS = {"bs": "GRDH", "c6": "SLC_"}
# Item statuses that end an item's life at the service.
FINAL_ITEM = ("done", "failed", "cancelled", "harvested", "refused", "error")
# Items in these statuses may be ordered again (their order never reached the service).
REORDERABLE = ("refused", "error")
SUBMITTING_STALE = dt.timedelta(hours=1)
# ODP order status -> item status (the doc writes "in progress"/"complete" in prose and
# in_progress/completed in JSON; spellings are normalised: lower case, spaces to _).
ITEM_STATUS = {"queued": "queued", "in_progress": "in_progress", "completed": "done", "complete": "done",
               "failed": "failed", "cancelled": "cancelled", "canceled": "cancelled"}


def s1_identity(reference: str) -> str | None:
    """The product identity shared by a Sentinel-1 product and the CARD product made from it.

    ``mission_start_stop_absoluteorbit_datatake``, e.g.
    ``S1A_20200510T063052_20200510T063117_032499_03C37F`` for both
    ``S1A_IW_GRDH_1SDV_20200510T063052_20200510T063117_032499_03C37F_5E9B`` and its
    ``..._5E9B_CARD_BS``. ``None`` if the name is not a Sentinel-1 product name. The same
    expression is used in SQL (``include/sql/order_reconcile.sql``).
    """
    m = _S1.match(reference)
    if not m:
        return None
    g = m.groups()
    return "_".join((g[0], g[4], g[5], g[6], g[7]))


def odp_status(raw: Any) -> str:
    """An ODP status as one spelling: ``queued``, ``in_progress``, ``completed``, ``failed``,
    ``cancelled`` (others kept, lower case, spaces as ``_``)."""
    s = str(raw or "unknown").strip().lower().replace(" ", "_").replace("-", "_")
    return {"complete": "completed", "canceled": "cancelled", "inprogress": "in_progress"}.get(s, s)


# --------------------------------------------------------------------------- HTTP client
class OrderClient:
    """Client of the CDSE On-Demand Processing API.

    Parameters
    ----------
    url : str
        ODP base, e.g. ``https://odp.dataspace.copernicus.eu/odata/v1``.
    username, password : str
        CDSE account without two-factor authentication (never logged).
    token_url, client_id : str
        CDSE identity service token endpoint and client (``cdse-public``).
    timeout_s, retries : float, int
        Per request; retries with back-off (urllib3 ``Retry``) on connection errors, and on
        429/5xx for GET only: a POST that reached the server is never repeated (it could
        place the order twice).
    """

    def __init__(self, url: str, username: str, password: str, *, token_url: str,
                 client_id: str = "cdse-public", timeout_s: float = 60.0, retries: int = 5,
                 session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self._user, self._password = username, password
        self.token_url, self.client_id = token_url, client_id
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=1.0,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset(["GET"]),
                      respect_retry_after_header=True, raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self._token: str | None = None
        self._refresh: str | None = None
        self._token_expires = 0.0
        self._refresh_expires = 0.0
        self.logins = 0                 # password grants (each is a CDSE "session"; limit 100)

    def __repr__(self) -> str:   # no credentials in tracebacks or logs
        return f"OrderClient({self.url!r})"

    def _request(self, method: str, url: str, **kw: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeout_s, **kw)
        except requests.RequestException as exc:
            raise OrderError(f"{method} {url}: {type(exc).__name__}") from None

    def token(self) -> str:
        """An access token (cached until 30 s before it expires; renewed with the refresh
        token while that is valid, else a new password login).

        Raises
        ------
        OrderAuthError
            If the login is refused (wrong credentials, or an account with 2FA: HTTP 401/400).
        OrderError
            If the token endpoint is unreachable or answers no token.
        """
        now = time.monotonic()
        if self._token and now < self._token_expires:
            return self._token
        form = {"client_id": self.client_id, "grant_type": "password", "username": self._user,
                "password": self._password}
        if self._refresh and now < self._refresh_expires:
            form = {"client_id": self.client_id, "grant_type": "refresh_token", "refresh_token": self._refresh}
        resp = self._request("POST", self.token_url, data=form)
        if 400 <= resp.status_code < 500 and form["grant_type"] == "refresh_token":
            self._refresh = None                     # expired refresh token: log in again
            return self.token()
        if 400 <= resp.status_code < 500:
            raise OrderAuthError(resp.status_code, f"login to {self.token_url} refused (check the "
                                 "connection's login and password; the account must not use 2FA)")
        if resp.status_code != 200:
            raise OrderError(f"token endpoint {self.token_url}: HTTP {resp.status_code}")
        try:
            body = resp.json()
            self._token = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise OrderError(f"token endpoint {self.token_url} answered no access_token") from None
        self.logins += form["grant_type"] == "password"
        self._token_expires = now + max(float(body.get("expires_in") or 600) - 30, 10)
        self._refresh = body.get("refresh_token")
        self._refresh_expires = now + max(float(body.get("refresh_expires_in") or 3600) - 30, 10)
        return self._token

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept": "application/json",
                "Authorization": f"Bearer {self.token()}"}

    def _json(self, resp: requests.Response, what: str) -> Any:
        if 400 <= resp.status_code < 500:
            raise OrderRefused(resp.status_code, _detail(resp))
        if resp.status_code not in (200, 201, 202):
            raise OrderError(f"{what}: HTTP {resp.status_code}: {_detail(resp)}")
        try:
            return resp.json()
        except ValueError:
            raise OrderError(f"{what}: not JSON: {resp.text[:200]!r}") from None

    def create(self, name: str, workflow: str, reference: str, priority: int = 1) -> dict[str, Any]:
        """Place one production order; returns the order (``Id``, ``Status``, ...).

        Raises
        ------
        OrderRefused
            HTTP 4xx (unknown workflow or product, quota, permissions).
        OrderError
            Unreachable, HTTP 5xx, or an answer without ``Id``.
        """
        ref = reference if reference.endswith(".SAFE") else reference + ".SAFE"
        body = {"WorkflowName": workflow, "InputProductReference": {"Reference": ref}, "Priority": priority,
                "Name": name}
        resp = self._request("POST", f"{self.url}/ProductionOrder/OData.CSC.Order", json=body,
                             headers=self._headers())
        out = _entity(self._json(resp, f"order {name}"))
        if out is None or out.get("Id") in (None, ""):
            raise OrderError(f"order {name}: the API answered no order Id: {resp.text[:200]}")
        return out

    def status(self, remote_id: str) -> dict[str, Any]:
        """``GET {url}/ProductionOrders(<id>)``: the order (``Status``, ``StatusMessage``)."""
        out = _entity(self._json(self._request("GET", f"{self.url}/ProductionOrders({remote_id})",
                                               headers=self._headers()), f"order {remote_id}"))
        if out is None:
            raise OrderError(f"order {remote_id}: the status answer holds no order")
        return out

    def product(self, remote_id: str) -> dict[str, Any] | None:
        """``GET {url}/ProductionOrder(<id>)/Product``: the output product (``Name``), or None."""
        try:
            return _entity(self._json(self._request("GET", f"{self.url}/ProductionOrder({remote_id})/Product",
                                                    headers=self._headers()), f"order {remote_id} product"))
        except OrderRefused:
            return None

    def workflows(self) -> list[dict[str, Any]]:
        """``GET {url}/Workflows``: every workflow (``Name``, ``OutputProductType``, ...)."""
        body = self._json(self._request("GET", f"{self.url}/Workflows", headers=self._headers()), "workflows")
        vals = body.get("value") if isinstance(body, dict) else body
        return [w for w in vals if isinstance(w, dict)] if isinstance(vals, list) else []


def _entity(body: Any) -> dict[str, Any] | None:
    """The entity of an OData answer: ``value`` as an object, as a one-element list, or the
    entity at top level (the single-order answer's shape is UNCONFIRMED: all three accepted)."""
    if not isinstance(body, dict):
        return None
    v = body.get("value", body)
    if isinstance(v, list):
        v = v[0] if v else None
    return v if isinstance(v, dict) else None


def _detail(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        for k in ("detail", "message", "error", "ErrorMessage", "error_description"):
            if body.get(k):
                return str(body[k])[:300]
    return str(body)[:300]


def client_from_connection(cfg: AoiConfig, conn: Any) -> OrderClient:
    """An :class:`OrderClient` from an Airflow connection (or any object with ``host``,
    ``schema``, ``port``, ``login``, ``password``, ``extra_dejson``).

    The connection's ``host`` (a full URL, or a host name used with ``schema`` as URL
    scheme, default https) overrides ``ordering.url``; a host without a path gets the path
    of ``ordering.url`` (``/odata/v1``). Extras ``token_url`` and ``client_id`` override
    the AOI settings.

    Raises
    ------
    ConfigError
        If the connection has no login or password.
    """
    o = cfg.ordering
    login, password = getattr(conn, "login", None), getattr(conn, "password", None)
    if not login or not password:
        raise ConfigError(f"connection {o.conn_id!r} needs a login and a password (the CDSE account)")
    extra = getattr(conn, "extra_dejson", None) or {}
    url = o.url
    host = getattr(conn, "host", None)
    if host:
        if "://" in host:
            base = host
        else:
            scheme = getattr(conn, "schema", None) or "https"
            port = getattr(conn, "port", None)
            base = f"{scheme}://{host}" + (f":{port}" if port else "")
        url = base if urlsplit(base).path not in ("", "/") else base.rstrip("/") + urlsplit(o.url).path
    return OrderClient(url, login, password, token_url=extra.get("token_url") or o.token_url,
                       client_id=extra.get("client_id") or o.client_id, timeout_s=o.timeout_s,
                       retries=o.retries)


def client_from_env(cfg: AoiConfig) -> OrderClient:
    """An :class:`OrderClient` from ``AIRFLOW_CONN_<CONN_ID>`` (URI or JSON form), as the
    DAG's connection, for the CLI.

    Raises
    ------
    ConfigError
        If the variable is missing or has no login/password.
    """
    var = f"AIRFLOW_CONN_{cfg.ordering.conn_id.upper()}"
    raw = os.environ.get(var)
    if not raw:
        raise ConfigError(f"no order API credentials: set {var} (e.g. "
                          f"'{{\"conn_type\": \"http\", \"login\": \"...\", \"password\": \"...\"}}')")
    if raw.lstrip().startswith("{"):
        c = json.loads(raw)
        extra = c.get("extra") or {}
        conn = SimpleNamespace(host=c.get("host"), schema=c.get("schema"), port=c.get("port"),
                               login=c.get("login"), password=c.get("password"),
                               extra_dejson=json.loads(extra) if isinstance(extra, str) else extra)
    else:
        u = urlsplit(raw)
        extra = dict(kv.split("=", 1) for kv in u.query.split("&") if "=" in kv)
        conn = SimpleNamespace(host=u.hostname, schema=unquote(u.path.lstrip("/")) or None, port=u.port,
                               login=unquote(u.username or ""), password=unquote(u.password or ""),
                               extra_dejson={k: unquote(v) for k, v in extra.items()})
    return client_from_connection(cfg, conn)


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class SourceProduct:
    """A GRD or SLC product over the AOI: what an order item is made from."""

    reference: str
    card: str                      # the CARD it is the source of: bs (GRD) or c6 (SLC)
    identity: str
    obstime: dt.datetime


@dataclass
class CardPlan:
    card: str
    found: int = 0                 # source products over the AOI and window
    have_card: int = 0             # ... with a CARD product in dias_catalogue
    in_flight: int = 0             # ... already ordered (not refused/failed)
    not_source: int = 0            # records of another kind (EW mode, GRDM, ...) ignored
    capped: int = 0                # left for a later run by max_products_per_run
    to_order: list[SourceProduct] = field(default_factory=list)


@dataclass
class OrderPlan:
    start: dt.datetime
    end: dt.datetime
    cards: dict[str, CardPlan]
    report: HarvestReport          # pages read and records skipped by the source search

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "cards": {
            c: {"found": p.found, "have_card": p.have_card, "in_flight": p.in_flight,
                "not_source": p.not_source, "capped": p.capped, "to_order": len(p.to_order),
                "first": [s.reference for s in p.to_order[:5]]}
            for c, p in self.cards.items()},
            "skipped_records": self.report.lines(20)}


def plan(url: str, cfg: AoiConfig, start: dt.datetime, end: dt.datetime,
         cards: Iterable[str] | None = None, source: Any = None) -> OrderPlan:
    """The source products of the window that have no CARD counterpart (the complement).

    For each card (``ordering.cards`` and the AOI's cards; ``bs`` <- GRD, ``c6`` <- SLC),
    the catalogue (OData, or resto with ``ordering.source_query``; ``productType`` from
    ``ordering.source_product_types``) is searched over the
    AOI for products sensed in ``[start, end]``; IW GRDH (bs) or IW SLC (c6) products
    whose :func:`s1_identity` matches neither a CARD product in ``dias_catalogue`` nor an
    order item still in flight are to be ordered, oldest first, at most
    ``ordering.max_products_per_run`` in all.

    Raises
    ------
    HarvestError
        If the catalogue cannot be searched to the end.
    LookupError
        If the AOI row is missing.
    """
    o = cfg.ordering
    if cfg.catalogue.source not in ("odata", "resto"):
        raise ConfigError(f"ordering needs catalogue.source odata or resto (the GRD/SLC source products are "
                          f"searched there), not {cfg.catalogue.source}")
    source = source or make_source(cfg)
    report = HarvestReport()
    cards = [c for c in (cards or o.cards) if c in o.cards and c in cfg.cards]
    with transaction(url) as conn:
        aoi = aoi_geometry(conn, cfg)
    out: dict[str, CardPlan] = {}
    budget = o.max_products_per_run
    for card in cards:
        cp = CardPlan(card)
        if cfg.catalogue.source == "odata":
            query = Query(f"{card} source {o.source_product_types[card]}", "SENTINEL-1", o.source_product_types[card])
        else:
            query = Query(f"{card} source {o.source_product_types[card]}", "Sentinel1", o.source_product_types[card],
                          tuple(sorted(o.source_query.items())))
        found = _source_products(source, query, card, start, end, aoi, report, cp)
        _complement(url, cfg, card, start, end, found, cp, budget)
        budget -= len(cp.to_order)
        out[card] = cp
        log.info("ordering %s %s..%s: %d %s source products, %d with a CARD product, %d ordered already, "
                 "%d to order%s", card, start.date(), end.date(), cp.found, o.source_product_types[card],
                 cp.have_card, cp.in_flight, len(cp.to_order),
                 f" ({cp.capped} left for later runs: ordering.max_products_per_run)" if cp.capped else "")
    return OrderPlan(start, end, out, report)


def _source_products(source: Any, query: Query, card: str, start: dt.datetime, end: dt.datetime,
                     aoi: Any, report: HarvestReport, cp: CardPlan) -> dict[str, SourceProduct]:
    """The IW GRDH (bs) or IW SLC (c6) products of the window over the AOI, by identity."""
    found: dict[str, SourceProduct] = {}
    for raw in source.search_raw(query, start, end, aoi, report):
        report.read += 1
        title = raw.title if isinstance(raw.title, str) else ""
        ref = title.removesuffix(".SAFE").removesuffix(".zip")
        m = _S1.match(ref)
        if not m or m.group(2) != "IW" or m.group(3) != SOURCE_CLASS[card] or ref != m.group(0):
            cp.not_source += 1
            continue
        t = dt.datetime.strptime(m.group(5), "%Y%m%dT%H%M%S")
        if not start <= t <= end:
            continue
        fp = raw.footprint
        try:
            if isinstance(fp, dict) and not shapely.intersects(shapely.geometry.shape(fp), aoi):
                continue
        except (ValueError, TypeError, KeyError, shapely.errors.GEOSException):
            pass                   # the server filtered on the AOI already
        ident = s1_identity(ref)
        if ident is None:          # matched the source pattern above, so never; counted if it happens
            cp.not_source += 1
            continue
        found.setdefault(ident, SourceProduct(ref, card, ident, t))
    cp.found = len(found)
    return found


def _complement(url: str, cfg: AoiConfig, card: str, start: dt.datetime, end: dt.datetime,
                found: dict[str, SourceProduct], cp: CardPlan, budget: int) -> None:
    """Fill ``cp.to_order``: the found products without a CARD product or an order in flight,
    oldest first, at most ``budget``."""
    with transaction(url) as conn:
        have = {s1_identity(r[0]) for r in conn.execute(q("order_card_references", schema=cfg.schema), {
            "card": card, "start": start - dt.timedelta(days=1), "end": end + dt.timedelta(days=1)})}
        reorder = REORDERABLE + (("failed", "cancelled") if cfg.ordering.reorder_failed else ())
        flying = {r[0] for r in conn.execute(q("order_items_in_flight", schema=cfg.schema),
                                             {"card": card, "reorderable": list(reorder)})}
    todo = []
    for ident, sp in sorted(found.items(), key=lambda kv: kv[1].obstime):
        if ident in have:
            cp.have_card += 1
        elif ident in flying:
            cp.in_flight += 1
        else:
            todo.append(sp)
    cp.to_order = todo[:budget]
    cp.capped = len(todo) - len(cp.to_order)


# --------------------------------------------------------------------------- submit
@dataclass
class OrderReport:
    """What one ordering run planned, placed, and found out about open orders, and the
    quota it left (``quota``: monthly_quota, used_this_month, in_progress, max_concurrent,
    left_this_month)."""

    plan: dict[str, Any]
    dry_run: bool = False
    orders: list[dict[str, Any]] = field(default_factory=list)     # placed (or refused) now
    polled: list[dict[str, Any]] = field(default_factory=list)     # open orders' status
    reconciled: int = 0
    problems: list[str] = field(default_factory=list)              # refused / failed, one line each
    quota: dict[str, int] = field(default_factory=dict)
    held: int = 0                                                  # planned but left for later runs by the quotas

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def quota_use(url: str, cfg: AoiConfig) -> dict[str, int]:
    """The ODP quotas as used by this AOI's orders: items submitted this calendar month
    (UTC; everything but refused orders counts, also failed and cancelled ones: whether the
    service counts them is UNCONFIRMED) and items queued or in progress now."""
    o = cfg.ordering
    with transaction(url) as conn:
        used, running = one(conn.execute(q("order_quota", schema=cfg.schema)))
    return {"monthly_quota": o.monthly_quota, "used_this_month": used,
            "left_this_month": max(o.monthly_quota - used, 0), "max_concurrent": o.max_concurrent,
            "in_progress": running}


def submit(url: str, cfg: AoiConfig, order_plan: OrderPlan, client: OrderClient | None,
           dry_run: bool = False) -> OrderReport:
    """Place the planned orders, one production order per source product, within the quotas.

    At most ``ordering.monthly_quota`` products per calendar month and
    ``ordering.max_concurrent`` items queued or in progress are ordered (the rest waits for
    a later run: ``held``). Each order is recorded (``card_orders``, ``card_order_items``) as
    ``submitting`` before the request, then with the API's answer: its ``Id`` and status, or
    ``refused`` (HTTP 4xx, with the API's reason; the product may be ordered again by a
    later run) or ``error`` (unreachable/5xx; the remaining orders of the run are not sent).
    An order left ``submitting`` by a crash blocks its product for :data:`SUBMITTING_STALE`,
    then :func:`poll` marks it ``error``.

    Returns
    -------
    OrderReport

    Raises
    ------
    ConfigError
        Orders to place and no client.
    OrderAuthError
        The login was refused (nothing is recorded).
    OrderError
        A card's workflow cannot be found.
    """
    o = cfg.ordering
    rep = OrderReport(plan=order_plan.as_dict(), dry_run=dry_run)
    rep.quota = quota_use(url, cfg)
    budget = min(rep.quota["left_this_month"], max(o.max_concurrent - rep.quota["in_progress"], 0))
    todo = [sp for cp in order_plan.cards.values() for sp in cp.to_order]
    rep.held = max(len(todo) - budget, 0)
    if rep.held:
        log.warning("ordering: %d products left for later runs by the ODP quotas (%d of %d this month used, "
                    "%d of %d running)", rep.held, rep.quota["used_this_month"], o.monthly_quota,
                    rep.quota["in_progress"], o.max_concurrent)
    todo = todo[:budget]
    workflows: dict[str, str] = {}
    if todo and not dry_run:
        if client is None:
            raise ConfigError("no order client: pass one (client_from_connection / client_from_env)")
        client.token()                 # wrong credentials fail here, before anything is recorded
        workflows = {c: workflow_for(cfg, client, c) for c in {sp.card for sp in todo}}
    for sp in todo:
        name = o.order_name.format(aoi=cfg.name, card=sp.card, reference=sp.reference, start=order_plan.start,
                                   end=order_plan.end)[:255]
        entry: dict[str, Any] = {"name": name, "card": sp.card, "products": 1, "reference": sp.reference,
                                 "workflow": workflows.get(sp.card) or o.workflows.get(sp.card, "?")}
        rep.orders.append(entry)
        if dry_run:
            entry["status"] = "dry-run"
            continue
        if client is None:
            raise ConfigError("no order client: pass one (client_from_connection / client_from_env)")
        if not _place(url, cfg, client, sp, order_plan, entry, rep):
            break
    rep.quota["submitted_now"] = sum(1 for e in rep.orders if e.get("remote_id"))
    return rep


def workflow_for(cfg: AoiConfig, client: OrderClient, card: str) -> str:
    """The ODP workflow of a card: ``ordering.workflows[card]``, else the workflow whose
    ``OutputProductType`` is ``ordering.output_product_types[card]`` (GET /Workflows).

    Raises
    ------
    OrderError
        If no workflow produces the card's product type.
    """
    o = cfg.ordering
    if card in o.workflows:
        return o.workflows[card]
    want = o.output_product_types[card]
    names = [str(w.get("Name")) for w in client.workflows() if str(w.get("OutputProductType")) == want]
    if not names:
        raise OrderError(f"no ODP workflow produces {want}: set ordering.workflows.{card} "
                         "(GET /Workflows lists them)")
    return sorted(names)[0]


def _place(url: str, cfg: AoiConfig, client: OrderClient, sp: SourceProduct, order_plan: OrderPlan,
           entry: dict[str, Any], rep: OrderReport) -> bool:
    """Record and place one order; False when the API is unusable (the run's remaining orders wait).

    Raises
    ------
    OrderAuthError
        The login was refused.
    """
    o, name, workflow = cfg.ordering, entry["name"], entry["workflow"]
    with transaction(url) as conn:
        oid = one(conn.execute(q("order_insert", schema=cfg.schema), {
            "card": sp.card, "processor": workflow, "name": name, "start": order_plan.start,
            "end": order_plan.end, "status": "submitting", "n_items": 1}))[0]
        conn.execute(q("order_item_insert", schema=cfg.schema), {
            "order_id": oid, "ref": sp.reference, "card": sp.card, "identity": sp.identity,
            "obstime": sp.obstime, "status": "submitting"})
    entry["id"] = oid
    try:
        answer = client.create(name, workflow, sp.reference, o.priority)
    except OrderAuthError as exc:
        _order_failed(url, cfg, oid, "error", exc.status, str(exc))
        raise
    except OrderRefused as exc:
        _order_failed(url, cfg, oid, "refused", exc.status, exc.detail)
        entry.update(status="refused", http_status=exc.status, error=exc.detail)
        rep.problems.append(f"order {name} ({sp.card} from {sp.reference}) refused: HTTP {exc.status}: {exc.detail}")
        log.error("%s", rep.problems[-1])
        return True
    except OrderError as exc:
        _order_failed(url, cfg, oid, "error", None, str(exc))
        entry.update(status="error", error=str(exc))
        rep.problems.append(f"order {name} ({sp.card} from {sp.reference}) not placed: {exc}; "
                            "the remaining orders of this run were not sent")
        log.error("%s", rep.problems[-1])
        return False
    remote, status = str(answer["Id"]), odp_status(answer.get("Status") or "queued")[:24]
    with transaction(url) as conn:
        conn.execute(q("order_placed", schema=cfg.schema), {"id": oid, "remote_id": remote, "status": status})
        conn.execute(q("order_item_update", schema=cfg.schema), {
            "order_id": oid, "ref": sp.reference, "status": ITEM_STATUS.get(status, status),
            "remote_item_id": remote, "processed_name": None, "extra_info": None})
    entry.update(status=status, remote_id=remote)
    log.info("order %s placed: ODP order %s, %s from %s (workflow %s)", name, remote, sp.card, sp.reference, workflow)
    return True


def _order_failed(url: str, cfg: AoiConfig, oid: int, status: str, http_status: int | None,
                  error: str) -> None:
    with transaction(url) as conn:
        conn.execute(q("order_failed", schema=cfg.schema),
                     {"id": oid, "status": status, "http_status": http_status, "error": error[:1000]})


# --------------------------------------------------------------------------- poll
def poll(url: str, cfg: AoiConfig, client: OrderClient, force: bool = False) -> list[dict[str, Any]]:
    """Read the status of the open orders from the API and record it.

    Orders polled less than ``ordering.poll_interval_minutes`` ago are left alone unless
    ``force``. Each open order's ``Status`` (normalised by :func:`odp_status`) becomes its
    item's status (``completed`` -> ``done``); ``StatusMessage`` is kept; a completed
    order's output name (``/ProductionOrder(<id>)/Product``) is recorded as the item's
    ``processed_name``. A ``failed``/``cancelled``/``completed`` order is finished; an
    unknown status is kept and polled again. Orders left ``submitting`` longer than
    :data:`SUBMITTING_STALE` become ``error``.

    Returns
    -------
    list of dict
        Per polled order: id, remote_id, name, status, item counts by status, error.
    """
    o = cfg.ordering
    with transaction(url) as conn:
        conn.execute(q("order_stale_submitting", schema=cfg.schema), {"older_than": SUBMITTING_STALE})
        rows = conn.execute(q("order_open", schema=cfg.schema), {
            "min_age": dt.timedelta(0) if force else dt.timedelta(minutes=o.poll_interval_minutes)}).fetchall()
    out = []
    for oid, remote, name in rows:
        entry: dict[str, Any] = {"id": oid, "remote_id": remote, "name": name}
        try:
            answer = client.status(remote)
            status = odp_status(answer.get("Status"))[:24]
            product = client.product(remote) if status == "completed" else None
        except OrderError as exc:
            entry.update(status="poll failed", error=str(exc))
            log.warning("order %s (ODP %s): status not available: %s", name, remote, exc)
            out.append(entry)
            continue
        message = str(answer.get("StatusMessage") or "")[:1000] or None
        with transaction(url) as conn:
            conn.execute(q("order_items_of_order", schema=cfg.schema), {
                "order_id": oid, "status": ITEM_STATUS.get(status, status), "remote_item_id": remote,
                "processed_name": str(product.get("Name") or "").removesuffix(".SAFE") or None if product else None,
                "extra_info": message})
            counts = dict(conn.execute(q("order_item_counts", schema=cfg.schema), {"id": oid}).fetchall())
            finished = all(s in FINAL_ITEM for s in counts)
            conn.execute(q("order_polled", schema=cfg.schema), {
                "id": oid, "status": status, "summary": json.dumps(answer, default=str), "finished": finished})
            reconcile_orders(conn, cfg)
        entry.update(status=status, items=counts, finished=finished)
        if status in ("failed", "cancelled"):
            entry["error"] = f"{status} at the ODP service: {message or 'no message'}"
        elif status not in ITEM_STATUS:
            log.warning("order %s (ODP %s): unknown status %r, polled again later", name, remote, status)
        log.info("order %s (ODP %s): %s, items %s", name, remote, status, counts)
        out.append(entry)
    return out


def order_status(url: str, cfg: AoiConfig) -> list[dict[str, Any]]:
    """Every recorded order with its item counts by status (newest first)."""
    with transaction(url) as conn:
        reconcile_orders(conn, cfg)
        return dicts(conn.execute(q("order_status", schema=cfg.schema)))


def run_ordering(url: str, cfg: AoiConfig, start: dt.datetime, end: dt.datetime,
                 client: OrderClient | None, *, dry_run: bool = False,
                 cards: Iterable[str] | None = None, source: Any = None) -> OrderReport:
    """Plan, place and follow orders: what the DAG's ordering task runs.

    :func:`poll` (open orders, unless ``dry_run``), :func:`plan` over ``[start, end]``,
    :func:`submit` within the quotas. ``report.problems`` lists refused and failed orders
    (the task should fail when it is not empty, after everything was recorded);
    ``report.quota`` the ODP quota used and left, logged.

    Raises
    ------
    ConfigError
        If ``ordering.enabled`` is false and this is not a dry run.
    HarvestError
        If the source catalogue cannot be searched.
    OrderAuthError
        If the login is refused (nothing is recorded).
    """
    if not cfg.ordering.enabled and not dry_run:
        raise ConfigError(f"ordering is off for AOI {cfg.name} (ordering.enabled: false): enable it, "
                          "or use a dry run to see what would be ordered")
    polled = [] if dry_run or client is None else poll(url, cfg, client)
    p = plan(url, cfg, start, end, cards=cards, source=source)
    rep = submit(url, cfg, p, client, dry_run=dry_run)
    rep.polled = polled
    for e in polled:
        if e.get("error"):
            rep.problems.append(f"order {e['name']} (DIAS {e['remote_id']}): {e['error']}")
    with transaction(url) as conn:
        rep.reconciled = reconcile_orders(conn, cfg)
    rep.quota.update({k: v for k, v in quota_use(url, cfg).items() if k != "submitted_now"})
    log.info("ODP quota: %d of %d products ordered this month (%d left), %d of %d running; %d held for later runs",
             rep.quota["used_this_month"], rep.quota["monthly_quota"], rep.quota["left_this_month"],
             rep.quota["in_progress"], rep.quota["max_concurrent"], rep.held)
    return rep


__all__ = ["HarvestError", "OrderAuthError", "OrderClient", "OrderError", "OrderPlan", "OrderRefused", "OrderReport",
           "client_from_connection", "client_from_env", "odp_status", "order_status", "plan", "poll", "quota_use",
           "run_ordering", "s1_identity", "submit", "workflow_for"]
