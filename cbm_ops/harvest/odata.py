"""CDSE OData catalogue (``catalogue.source: odata``), the default live source.

Request (CDSE documentation "OData", recorded answers in
``../shared/data/catalogue-responses/cdse-odata``)::

    GET {url}/Products?$filter=Collection/Name eq 'SENTINEL-2'
          and Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType'
              and att/OData.CSC.StringAttribute/Value eq 'S2MSI2A')
          and OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((lon lat, ...))')
          and ContentDate/Start ge <start> and ContentDate/Start le <end>
          [and Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover'
              and att/OData.CSC.DoubleAttribute/Value le <max>)]
        &$orderby=ContentDate/Start asc&$top=<page>&$expand=Attributes&$count=true

Paging follows ``@odata.nextLink`` verbatim (the server builds it: ``$skip`` may sit anywhere
in it and ``$count`` is dropped after the first page); a link to another host is refused.
The service's caps: ``$top`` <= 1000, ``$skip`` <= 10,000 (``catalogue.max_skip``): a larger
``$skip`` answers HTTP 422 and the nextLink is silently left out when the next ``$skip``
would pass it (CDSE release note 2024-11-12). A window is split in two (recursively) when
its first page counts more than ``catalogue.max_per_query``, when a full page at the
``$skip`` cap has no nextLink, or on a 422 while paging. HTTP 429 and 5xx are retried with
back-off by urllib3 (``Retry-After`` honoured); an answer that is not JSON (a truncated
body) is requested once more, then fails the harvest naming the window and page.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from ..config import CatalogueConfig
from ..errors import HarvestError
from ..http import retrying_session
from .parsers import CARD_PRODUCT_TYPES, parse_odata
from .records import HarvestReport, Page, RawRecord, SceneRecord, _normalise_counted
from .sources import EDGE_MARGIN, Query, _query_wkt, cloud_ok, split_window

log = logging.getLogger(__name__)

COLLECTION = {"s2": "SENTINEL-2", "bs": "SENTINEL-1", "c6": "SENTINEL-1"}


def _time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def odata_filter(query: Query, start: dt.datetime, end: dt.datetime, aoi_wkt: str,
                 max_cloud: float | None = None, online_only: bool = False) -> str:
    """The ``$filter`` of one search (CDSE OData syntax; times UTC, milliseconds).

    ``aoi_wkt`` is a POLYGON in lon/lat (EPSG:4326); MULTIPOLYGON is not accepted by the
    service (CDSE doc), :func:`~.sources._query_wkt` makes one.
    """
    parts = [f"Collection/Name eq '{query.collection}'",
             "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
             f"att/OData.CSC.StringAttribute/Value eq '{query.product_type}')",
             f"OData.CSC.Intersects(area=geography'SRID=4326;{aoi_wkt}')",
             f"ContentDate/Start ge {_time(start)}", f"ContentDate/Start le {_time(end)}"]
    if max_cloud is not None:
        parts.append("Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
                     f"att/OData.CSC.DoubleAttribute/Value le {max_cloud:.2f})")
    if online_only:
        parts.append("Online eq true")
    parts.extend(f"{k} {v}" for k, v in query.extra)
    return " and ".join(parts)


def _skip_of(url: str) -> int:
    vals = parse_qs(urlsplit(url).query).get("$skip")
    try:
        return int(vals[0]) if vals else 0
    except ValueError:
        return 0


class ODataSource:
    """CDSE OData ``Products`` search, paged to the end, capped windows split.

    Parameters
    ----------
    cfg : CatalogueConfig
        ``url`` (default the CDSE OData base), ``page_size`` ($top, <= 1000),
        ``max_per_query``, ``max_skip``, ``max_cloud_cover``, ``retries``, ``timeout_s``.
    session : requests.Session, optional
        Mounted with the retrying adapter (:func:`cbm_ops.http.retrying_session`).
    """

    def __init__(self, cfg: CatalogueConfig, session: requests.Session | None = None,
                 date_tolerance: dt.timedelta = dt.timedelta(hours=1)):
        self.cfg = cfg
        self.base = cfg.api_url
        self.host = urlsplit(self.base).netloc
        self.name = f"odata:{self.host}"
        self.date_tolerance = date_tolerance
        self.session = retrying_session(cfg.retries, session=session)
        self.wanted = frozenset({cfg.s2_product_type, *cfg.card_product_types.values()}) | CARD_PRODUCT_TYPES

    def __repr__(self) -> str:
        return f"ODataSource({self.base!r})"

    def card_query(self, card: str) -> Query:
        """Collection and productType of a card (S2 L2A, CARD-BS, CARD-COH6)."""
        ptype = self.cfg.s2_product_type if card == "s2" else self.cfg.card_product_types[card]
        return Query(card, COLLECTION[card], ptype)

    def _params(self, query: Query, start: dt.datetime, end: dt.datetime, aoi_wkt: str) -> dict[str, str]:
        cloud = self.cfg.max_cloud_cover if query.collection == "SENTINEL-2" else None
        return {"$filter": odata_filter(query, start, end, aoi_wkt, cloud, self.cfg.online_only),
                "$orderby": "ContentDate/Start asc", "$top": str(self.cfg.page),
                "$expand": "Attributes", "$count": "true"}

    def describe(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any) -> list[str]:
        """The first request of the card's search, as sent (later pages follow nextLink)."""
        params = self._params(self.card_query(card), start - EDGE_MARGIN, end + EDGE_MARGIN, _query_wkt(aoi))
        url = str(requests.Request("GET", f"{self.base}/Products", params=params).prepare().url)
        return ["GET " + url, "  $filter = " + params["$filter"]]

    def search(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any,
               report: HarvestReport) -> Iterator[SceneRecord]:
        """The card's normalised records over ``aoi`` sensed in ``[start, end]``.

        Raises
        ------
        HarvestError
            HTTP error after the retries, a page that stays unreadable, a window that
            cannot be split below the cap.
        """
        for raw in self.search_raw(self.card_query(card), start, end, aoi, report):
            rec = _normalise_counted(raw, self.name, report, self.date_tolerance)
            if rec is not None and rec.card == card and cloud_ok(rec, self.cfg, report):
                yield rec

    def search_raw(self, query: Query, start: dt.datetime, end: dt.datetime, aoi: Any,
                   report: HarvestReport) -> Iterator[RawRecord]:
        """Raw records of ``query`` (also the S1 source products of CARD ordering)."""
        yield from self._window(query, start - EDGE_MARGIN, end + EDGE_MARGIN, _query_wkt(aoi), report)

    def _get_page(self, url: str, params: dict[str, str] | None, where: str) -> tuple[int, Page | None, str]:
        """One page: (HTTP status, parsed page or None, body excerpt); a body that is not
        JSON is requested once more.

        Raises
        ------
        HarvestError
            Unreachable, or the page is still unreadable on the second request.
        """
        for attempt in (1, 2):
            try:
                resp = self.session.get(url, params=params, timeout=self.cfg.timeout_s)
            except requests.RequestException as exc:
                raise HarvestError(f"{where}: catalogue {self.name} unreachable: {type(exc).__name__}") from None
            if resp.status_code != 200:
                return resp.status_code, None, resp.text[:300]
            try:
                doc = resp.json()
            except ValueError as exc:
                if attempt == 1:
                    log.warning("%s: the answer is not JSON (%s), asking again", where, exc)
                    continue
                raise HarvestError(f"{where}: catalogue answered invalid JSON twice ({exc}): "
                                   f"{resp.text[:120]!r}") from None
            try:
                return 200, self._parse(doc), ""
            except HarvestError as exc:
                raise HarvestError(f"{where}: {exc}") from None
        raise AssertionError("unreachable")

    def _parse(self, doc: Any) -> Page:
        return parse_odata(doc, self.wanted)

    def _window(self, query: Query, start: dt.datetime, end: dt.datetime, aoi_wkt: str,
                report: HarvestReport) -> Iterator[RawRecord]:
        """One window to the end of its nextLinks; split when the service caps it."""
        url: str = f"{self.base}/Products"
        params: dict[str, str] | None = self._params(query, start, end, aoi_wkt)
        page_no, read, skip, total, capped = 1, 0, 0, None, ""
        card = query.label
        while True:
            where = f"{card} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} page {page_no}"
            status, page, body = self._get_page(url, params, where)
            if status == 422 and skip > 0:
                capped = f"HTTP 422 at $skip {skip}"
                break
            if page is None:
                raise HarvestError(f"{where}: HTTP {status}: {body}")
            report.pages += 1
            if page_no == 1:
                total = page.total
                if total is not None and total > self.cfg.cap:
                    capped = f"{total} records, cap {self.cfg.cap}"
                    break
            read += len(page.records)
            log.info("%s %s..%s page %d: %d records (%d of %s)", card, start.isoformat(), end.isoformat(),
                     page_no, len(page.records), read, total if total is not None else "?")
            yield from page.records
            if page.next_url is None:
                if len(page.records) >= self.cfg.page and skip + self.cfg.page > self.cfg.max_skip:
                    capped = f"full page at $skip {skip} without nextLink ($skip cap {self.cfg.max_skip})"
                break
            url, params = self._follow(page.next_url, where), None
            skip = _skip_of(url)
            page_no += 1
            if page_no > self.cfg.max_pages:
                raise HarvestError(f"{where}: more than catalogue.max_pages {self.cfg.max_pages} pages")
        if capped:
            for a, b in split_window(card, start, end, self.cfg, report, capped):
                yield from self._window(query, a, b, aoi_wkt, report)

    def _follow(self, link: str, where: str) -> str:
        """The nextLink, verbatim, if it points at the configured catalogue.

        Raises
        ------
        HarvestError
            If the link leads to another scheme or host.
        """
        a, b = urlsplit(link), urlsplit(self.base)
        if (a.scheme, a.netloc) != (b.scheme, b.netloc):
            raise HarvestError(f"{where}: @odata.nextLink leads to {a.scheme}://{a.netloc}, not to the "
                               f"configured catalogue {b.scheme}://{b.netloc}")
        return link
