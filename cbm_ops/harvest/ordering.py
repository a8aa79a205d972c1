"""Order missing Sentinel-1 CARD products from the DIAS processing service (CREODIAS PaaS).

The DIAS keeps no Sentinel-1 CARD archive: CARD-BS is made on demand from IW GRDH products,
CARD-COH6 from IW SLC products (seed: "Ordering S1 CARD data"). This module does what the
seed's CREODIAS ``ordering_script`` (``historical_order.py``, ``get_order_summary.py``) does,
inside the pipeline:

1. :func:`plan` searches the resto catalogue for the source products (GRD, SLC) over the
   AOI and window and keeps the *complement*: those without a CARD product in
   ``dias_catalogue`` and not already ordered;
2. :func:`submit` places processing orders (``max_products_per_order`` each) with the
   order API and records them in ``card_orders`` / ``card_order_items``;
3. :func:`poll` reads each open order's summary and items and records their status;
4. :func:`~cbm_ops.harvest.catalogue.reconcile_orders` (run by every harvest) marks an item ``harvested`` once its CARD
   product is in ``dias_catalogue``.

Matching rule (source product -> CARD product): the CREODIAS CARD products are named after
their source product plus ``_CARD_BS`` / ``_CARD_COH6`` (``naming``). Two names match when
their mission, sensing start, sensing stop, absolute orbit and datatake id are equal
(:func:`s1_identity`); the trailing 4-character unique id is left out, as it changes when
ESA republishes a product. CARD-BS is matched against GRD names, CARD-COH6 against SLC
names (GRD and SLC slices of a datatake have different start/stop times, so a CARD-BS never
matches an SLC). For CARD-COH6 it is ASSUMED that the product carries the name of the SLC it
was ordered for (the pair's second image is chosen by the service).

HTTP API (the public CREODIAS "finder" order API; what is taken from public material and
what is assumed is listed in docs/harvest.md): a Keycloak token from ``token_url``
(password grant, ``client_id`` CLOUDFERRO_PUBLIC) sent as header ``Keycloak-Token``;
``POST {url}/`` with ``{"order_name", "priority", "processor", "identifier_list"}`` answers
the order with its ``id``; ``GET {url}/{id}/summary`` and ``GET {url}/{id}/order_items``
give its progress. Credentials come from the caller (an Airflow connection in the DAG, the
environment in the CLI) and are never logged.
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
from .catalogue import aoi_geometry, reconcile_orders
from .records import HarvestReport
from .sources import Query, RestoSource

log = logging.getLogger(__name__)

# mission, mode, product type, level/class/pol, start, stop, absolute orbit, datatake id, unique id
_S1 = re.compile(r"^(S1[A-D])_(\w{2})_(\w{4})_(\w{4})_(\d{8}T\d{6})_(\d{8}T\d{6})_(\d{6})_([0-9A-F]{6})_([0-9A-F]{4})")
# Source product class per card: IW GRD high resolution (CARD-BS), IW SLC (CARD-COH6).
SOURCE_CLASS = {"bs": "GRDH", "c6": "SLC_"}
# Item statuses that end an item's life at the DIAS (assumed from the summary's counters).
FINAL_ITEM = ("done", "failed", "cancelled", "harvested", "refused", "error")
# Items in these statuses may be ordered again (their order never reached the DIAS).
REORDERABLE = ("refused", "error")
SUBMITTING_STALE = dt.timedelta(hours=1)


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


# --------------------------------------------------------------------------- HTTP client
class OrderClient:
    """Client of the DIAS processing-order API (CREODIAS finder order API shape).

    Parameters
    ----------
    url : str
        Order API base, e.g. ``https://finder.creodias.eu/api/order``.
    username, password : str
        DIAS account (never logged).
    token_url, client_id : str
        Keycloak token endpoint and client (password grant).
    timeout_s, retries : float, int
        Per request; retries with backoff (urllib3 ``Retry``) on connection errors, and on
        429/5xx for GET only: a POST that reached the server is never repeated (it could
        place the order twice).
    """

    def __init__(self, url: str, username: str, password: str, *, token_url: str,
                 client_id: str = "CLOUDFERRO_PUBLIC", timeout_s: float = 60.0, retries: int = 5,
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
        self._token_expires = 0.0

    def __repr__(self) -> str:   # no credentials in tracebacks or logs
        return f"OrderClient({self.url!r})"

    def _request(self, method: str, url: str, **kw) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeout_s, **kw)
        except requests.RequestException as exc:
            raise OrderError(f"{method} {url}: {type(exc).__name__}") from None

    def token(self) -> str:
        """A Keycloak access token (cached until 30 s before it expires).

        Raises
        ------
        OrderAuthError
            If the login is refused (wrong credentials: HTTP 401/400).
        OrderError
            If the token endpoint is unreachable or answers no token.
        """
        if self._token and time.monotonic() < self._token_expires:
            return self._token
        resp = self._request("POST", self.token_url, data={
            "client_id": self.client_id, "username": self._user, "password": self._password,
            "grant_type": "password"})
        if 400 <= resp.status_code < 500:
            raise OrderAuthError(resp.status_code, f"login to {self.token_url} refused (check the "
                                 "connection's login and password)")
        if resp.status_code != 200:
            raise OrderError(f"token endpoint {self.token_url}: HTTP {resp.status_code}")
        try:
            body = resp.json()
            self._token = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise OrderError(f"token endpoint {self.token_url} answered no access_token") from None
        self._token_expires = time.monotonic() + max(float(body.get("expires_in") or 300) - 30, 10)
        return self._token

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept": "application/json",
                "Keycloak-Token": self.token()}

    def _json(self, resp: requests.Response, what: str) -> Any:
        if 400 <= resp.status_code < 500:
            raise OrderRefused(resp.status_code, _detail(resp))
        if resp.status_code not in (200, 201, 202):
            raise OrderError(f"{what}: HTTP {resp.status_code}: {_detail(resp)}")
        try:
            return resp.json()
        except ValueError:
            raise OrderError(f"{what}: not JSON: {resp.text[:200]!r}") from None

    def create(self, name: str, processor: str, identifiers: list[str], priority: int = 1) -> dict[str, Any]:
        """Place one processing order; returns the API's order object (with ``id``).

        Raises
        ------
        OrderRefused
            HTTP 4xx (invalid processor or product, quota, permissions).
        OrderError
            Unreachable, HTTP 5xx, or an answer without ``id``.
        """
        body = {"order_name": name, "priority": priority, "processor": processor,
                "identifier_list": identifiers}
        resp = self._request("POST", self.url + "/", json=body, headers=self._headers())
        out = self._json(resp, f"order {name}")
        if not isinstance(out, dict) or out.get("id") in (None, ""):
            raise OrderError(f"order {name}: the API answered no order id: {str(out)[:200]}")
        return out

    def summary(self, remote_id: str) -> dict[str, Any]:
        """``GET {url}/{id}/summary``: status and item counters of an order."""
        out = self._json(self._request("GET", f"{self.url}/{remote_id}/summary", headers=self._headers()),
                         f"order {remote_id} summary")
        if not isinstance(out, dict):
            raise OrderError(f"order {remote_id} summary is not an object")
        return out

    def items(self, remote_id: str, size: int = 100) -> list[dict[str, Any]]:
        """``GET {url}/{id}/order_items``, every page (``page`` from 0, ``size``)."""
        out: list[dict[str, Any]] = []
        page = 0
        while True:
            body = self._json(self._request("GET", f"{self.url}/{remote_id}/order_items",
                                            params={"page": page, "size": size}, headers=self._headers()),
                              f"order {remote_id} items")
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise OrderError(f"order {remote_id} items: no items list")
            out.extend(i for i in items if isinstance(i, dict))
            total = body.get("total")
            if not items or (isinstance(total, int) and len(out) >= total) or len(items) < size:
                return out
            page += 1


def _detail(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        for k in ("detail", "message", "error", "ErrorMessage"):
            if body.get(k):
                return str(body[k])[:300]
    return str(body)[:300]


def client_from_connection(cfg: AoiConfig, conn: Any) -> OrderClient:
    """An :class:`OrderClient` from an Airflow connection (or any object with ``host``,
    ``schema``, ``port``, ``login``, ``password``, ``extra_dejson``).

    The connection's ``host`` (a full URL, or a host name used with ``schema`` as URL
    scheme, default https) overrides ``ordering.url``; a host without a path gets the path
    of ``ordering.url`` (``/api/order``). Extras ``token_url`` and ``client_id`` override
    the AOI settings.

    Raises
    ------
    ConfigError
        If the connection has no login or password.
    """
    o = cfg.ordering
    login, password = getattr(conn, "login", None), getattr(conn, "password", None)
    if not login or not password:
        raise ConfigError(f"connection {o.conn_id!r} needs a login and a password (the DIAS account)")
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
         cards: Iterable[str] | None = None, source: RestoSource | None = None) -> OrderPlan:
    """The source products of the window that have no CARD counterpart (the complement).

    For each card (``ordering.cards`` and the AOI's cards; ``bs`` <- GRD, ``c6`` <- SLC),
    the resto catalogue (``catalogue.url``, ``productType`` from
    ``ordering.source_product_types`` plus ``ordering.source_query``) is searched over the
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
    if cfg.catalogue.source != "resto":
        raise ConfigError("ordering needs catalogue.source resto (the source products are searched there)")
    source = source or RestoSource(cfg.catalogue)
    report = HarvestReport()
    cards = [c for c in (cards or o.cards) if c in o.cards and c in cfg.cards]
    with transaction(url) as conn:
        aoi = aoi_geometry(conn, cfg)
    out: dict[str, CardPlan] = {}
    budget = o.max_products_per_run
    for card in cards:
        cp = CardPlan(card)
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


def _source_products(source: RestoSource, query: Query, card: str, start: dt.datetime, end: dt.datetime,
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
    """What one ordering run planned, placed, and found out about open orders."""

    plan: dict[str, Any]
    dry_run: bool = False
    orders: list[dict[str, Any]] = field(default_factory=list)     # placed (or refused) now
    polled: list[dict[str, Any]] = field(default_factory=list)     # open orders' status
    reconciled: int = 0
    problems: list[str] = field(default_factory=list)              # refused / failed, one line each

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def submit(url: str, cfg: AoiConfig, order_plan: OrderPlan, client: OrderClient | None,
           dry_run: bool = False) -> OrderReport:
    """Place the planned orders, ``ordering.max_products_per_order`` products each.

    Each order is recorded (``card_orders``, ``card_order_items``) as ``submitting``
    before the request, then with the API's answer: its ``id`` and status, or
    ``refused`` (HTTP 4xx, with the API's reason; the products may be ordered again by a
    later run) or ``error`` (unreachable/5xx; the remaining orders of the run are not
    sent). An order left ``submitting`` by a crash blocks its products for
    :data:`SUBMITTING_STALE`, then :func:`poll` marks it ``error`` (check the DIAS order
    list for its name before it is ordered again).

    Returns
    -------
    OrderReport
    """
    o = cfg.ordering
    rep = OrderReport(plan=order_plan.as_dict(), dry_run=dry_run)
    if not dry_run and any(cp.to_order for cp in order_plan.cards.values()):
        if client is None:
            raise ConfigError("no order client: pass one (client_from_connection / client_from_env)")
        client.token()                 # wrong credentials fail here, before anything is recorded
    for card, cp in order_plan.cards.items():
        chunks = [cp.to_order[i:i + o.max_products_per_order]
                  for i in range(0, len(cp.to_order), o.max_products_per_order)]
        for n, chunk in enumerate(chunks, 1):
            name = o.order_name.format(aoi=cfg.name, card=card, start=order_plan.start, end=order_plan.end)
            if len(chunks) > 1:
                name = f"{name}_{n}of{len(chunks)}"
            name = name[:255]          # the API's limit for order_name
            entry: dict[str, Any] = {"name": name, "card": card, "processor": o.processors[card],
                                     "products": len(chunk)}
            rep.orders.append(entry)
            if dry_run:
                entry["status"] = "dry-run"
                entry["first"] = [s.reference for s in chunk[:3]]
                continue
            if client is None:
                raise ConfigError("no order client: pass one (client_from_connection / client_from_env)")
            if not _place(url, cfg, client, card, chunk, order_plan, entry, rep):
                return rep
    return rep


def _place(url: str, cfg: AoiConfig, client: OrderClient, card: str, chunk: list[SourceProduct],
           order_plan: OrderPlan, entry: dict[str, Any], rep: OrderReport) -> bool:
    """Record and place one order; False when the API is unusable (the run's remaining orders wait).

    Raises
    ------
    OrderAuthError
        The login was refused.
    """
    o, name = cfg.ordering, entry["name"]
    with transaction(url) as conn:
        oid = one(conn.execute(q("order_insert", schema=cfg.schema), {
            "card": card, "processor": o.processors[card], "name": name, "start": order_plan.start,
            "end": order_plan.end, "status": "submitting", "n_items": len(chunk)}))[0]
        conn.cursor().executemany(q("order_item_insert", schema=cfg.schema), [
            {"order_id": oid, "ref": s.reference, "card": card, "identity": s.identity,
             "obstime": s.obstime, "status": "submitting"} for s in chunk])
    entry["id"] = oid
    try:
        answer = client.create(name, o.processors[card], [s.reference for s in chunk], o.priority)
    except OrderAuthError as exc:
        _order_failed(url, cfg, oid, "error", exc.status, str(exc))
        raise
    except OrderRefused as exc:
        _order_failed(url, cfg, oid, "refused", exc.status, exc.detail)
        entry.update(status="refused", http_status=exc.status, error=exc.detail)
        rep.problems.append(f"order {name} ({len(chunk)} {card} products) refused: HTTP {exc.status}: "
                            f"{exc.detail}")
        log.error("%s", rep.problems[-1])
        return True
    except OrderError as exc:
        _order_failed(url, cfg, oid, "error", None, str(exc))
        entry.update(status="error", error=str(exc))
        rep.problems.append(f"order {name} ({len(chunk)} {card} products) not placed: {exc}; "
                            "the remaining orders of this run were not sent")
        log.error("%s", rep.problems[-1])
        return False
    remote = str(answer["id"])
    status = str(answer.get("status") or "submitted")[:24]
    with transaction(url) as conn:
        conn.execute(q("order_placed", schema=cfg.schema), {"id": oid, "remote_id": remote, "status": status})
    entry.update(status=status, remote_id=remote)
    log.info("order %s placed: DIAS order %s, %d %s products (processor %s)", name, remote,
             len(chunk), card, o.processors[card])
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
    ``force``. For each order: ``/summary`` (stored in ``card_orders.summary``, its
    ``status`` as the order's status) and ``/order_items`` (each item's status,
    ``result.processed_name`` and ``extra_info``, matched on the source product name).
    An order whose items are all final is finished. Orders left ``submitting`` longer than
    :data:`SUBMITTING_STALE` become ``error``.

    Returns
    -------
    list of dict
        Per polled order: id, remote_id, name, status, item counts by status, error.
    """
    o = cfg.ordering
    with transaction(url) as conn:
        conn.execute(q("order_stale_submitting", schema=cfg.schema),
                     {"older_than": SUBMITTING_STALE})
        rows = conn.execute(q("order_open", schema=cfg.schema), {
            "min_age": dt.timedelta(0) if force else dt.timedelta(minutes=o.poll_interval_minutes)}).fetchall()
    out = []
    for oid, remote, name in rows:
        entry: dict[str, Any] = {"id": oid, "remote_id": remote, "name": name}
        try:
            summary = client.summary(remote)
            items = client.items(remote)
        except OrderError as exc:
            entry.update(status="poll failed", error=str(exc))
            log.warning("order %s (DIAS %s): status not available: %s", name, remote, exc)
            out.append(entry)
            continue
        updates = []
        for it in items:
            result = it.get("result")
            res: dict[str, Any] = result if isinstance(result, dict) else {}
            updates.append({"order_id": oid, "ref": str(it.get("name") or "").removesuffix(".SAFE"),
                            "status": str(it.get("status") or "unknown")[:24],
                            "remote_item_id": str(it.get("id")) if it.get("id") is not None else None,
                            "processed_name": res.get("processed_name"),
                            "extra_info": str(it.get("extra_info") or "")[:1000] or None})
        with transaction(url) as conn:
            if updates:
                conn.cursor().executemany(q("order_item_update", schema=cfg.schema), updates)
            counts = dict(conn.execute(q("order_item_counts", schema=cfg.schema), {"id": oid}).fetchall())
            open_items = sum(n for s, n in counts.items() if s not in FINAL_ITEM)
            status = str(summary.get("status") or "unknown")[:24]
            conn.execute(q("order_polled", schema=cfg.schema), {
                "id": oid, "status": status, "summary": json.dumps(summary, default=str),
                "finished": open_items == 0})
            reconcile_orders(conn, cfg)
        entry.update(status=status, items=counts, finished=open_items == 0)
        failed = counts.get("failed", 0) + counts.get("cancelled", 0)
        if failed:
            entry["error"] = f"{failed} items failed or cancelled at the DIAS"
        log.info("order %s (DIAS %s): %s, items %s", name, remote, status, counts)
        out.append(entry)
    return out


def order_status(url: str, cfg: AoiConfig) -> list[dict[str, Any]]:
    """Every recorded order with its item counts by status (newest first)."""
    with transaction(url) as conn:
        reconcile_orders(conn, cfg)
        return dicts(conn.execute(q("order_status", schema=cfg.schema)))


def run_ordering(url: str, cfg: AoiConfig, start: dt.datetime, end: dt.datetime,
                 client: OrderClient | None, *, dry_run: bool = False,
                 cards: Iterable[str] | None = None, source: RestoSource | None = None) -> OrderReport:
    """Plan, place and follow orders: what the DAG's ordering task runs.

    :func:`poll` (open orders, unless ``dry_run``), :func:`plan` over ``[start, end]``,
    :func:`submit`. ``report.problems`` lists refused and failed orders and items (the
    task should fail when it is not empty, after everything was recorded).

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
    return rep


__all__ = ["HarvestError", "OrderAuthError", "OrderClient", "OrderError", "OrderPlan", "OrderRefused", "OrderReport",
           "client_from_connection", "client_from_env", "order_status", "plan", "poll",
           "run_ordering", "s1_identity", "submit"]
