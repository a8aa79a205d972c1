"""STAC API catalogues (``catalogue.source: stac``) through pystac-client.

Any STAC API with item search: CDSE STAC v1 (``https://stac.dataspace.copernicus.eu/v1``,
collection ``sentinel-2-l2a``, ``limit`` <= 200), Element84 Earth Search
(``https://earth-search.aws.element84.com/v1``, ``sentinel-2-c1-l2a`` or ``sentinel-2-l2a``),
Microsoft Planetary Computer (``https://planetarycomputer.microsoft.com/api/stac/v1``,
``sentinel-2-l2a``). One ``POST {url}/search`` per card and window::

    {"collections": [<catalogue.collections[card]>], "intersects": <AOI polygon>,
     "datetime": "<start>/<end>", "limit": <page>,
     "filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, <max>]},
     "filter-lang": "cql2-json"}           # or "query": {"eo:cloud_cover": {"lte": <max>}}

Pages follow the ``next`` links as pystac-client does (``ItemSearch.pages_as_dicts``): a POST
link's body is sent as given (Earth Search: the echoed search plus a ``next`` token, without
the filter; Planetary Computer: the whole search plus ``token``), a GET link as its href.
HTTP 429 and 5xx are retried with back-off by urllib3 on pystac-client's session (search
POSTs are idempotent, so they are retried too). Every item is checked again client-side:
collection, sensing time, AOI intersection and cloud cover (Earth Search was seen not to
enforce its filter). A window whose first page reports more matches than
``catalogue.max_per_query`` is split; a server that repeats the same ``next`` link, or pages
past ``catalogue.max_pages``, fails the harvest.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Generator, Iterator
from typing import Any
from urllib.parse import urlsplit

import shapely
from urllib3.util.retry import Retry

from ..config import CatalogueConfig
from ..errors import HarvestError
from .parsers import parse_stac
from .records import HarvestReport, Page, SceneRecord, SkippedRecord, _normalise_counted
from .sources import EDGE_MARGIN, _query_wkt, cloud_ok, split_window

log = logging.getLogger(__name__)


def cloud_filter_kind(cfg: CatalogueConfig) -> str:
    """How the cloud cover is sent: ``query`` (Planetary Computer, Earth Search), ``cql2``
    (CDSE STAC and others), or ``none`` (``catalogue.cloud_filter``)."""
    if cfg.cloud_filter != "auto":
        return cfg.cloud_filter
    host = urlsplit(cfg.api_url).netloc
    return "query" if ("planetarycomputer" in host or "earth-search" in host) else "cql2"


class StacSource:
    """Item search of a STAC API, paged by its ``next`` links, capped windows split.

    Parameters
    ----------
    cfg : CatalogueConfig
        ``url``, ``collections`` (per card), ``page_size`` (``limit``), ``max_cloud_cover``,
        ``cloud_filter``, ``retries``, ``timeout_s``, ``max_per_query``, ``max_pages``.
    """

    def __init__(self, cfg: CatalogueConfig, date_tolerance: dt.timedelta = dt.timedelta(hours=1)):
        from pystac_client.stac_api_io import StacApiIO

        self.cfg = cfg
        self.url = cfg.api_url
        self.name = f"stac:{urlsplit(self.url).netloc}"
        self.date_tolerance = date_tolerance
        retry = Retry(total=cfg.retries, backoff_factor=1.0, status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=frozenset(["GET", "POST"]), respect_retry_after_header=True,
                      raise_on_status=False)
        self.stac_io = StacApiIO(timeout=cfg.timeout_s, max_retries=retry)

    def __repr__(self) -> str:
        return f"StacSource({self.url!r})"

    def body(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any) -> dict[str, Any]:
        """The search body of one card and window (the first request; pystac-client sends it)."""
        coll = self.cfg.collections[card]
        geom = shapely.geometry.mapping(shapely.from_wkt(_query_wkt(aoi)))
        out: dict[str, Any] = {"collections": [coll], "intersects": geom,
                               "datetime": f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
                               "limit": self.cfg.page}
        cloud = self.cfg.max_cloud_cover if card == "s2" else None
        kind = cloud_filter_kind(self.cfg)
        if cloud is not None and kind == "cql2":
            out["filter"] = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, cloud]}
            out["filter-lang"] = "cql2-json"
        elif cloud is not None and kind == "query":
            out["query"] = {"eo:cloud_cover": {"lte": cloud}}
        return out

    def describe(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any) -> list[str]:
        """The first request of the card's search (method, URL, JSON body)."""
        if card not in self.cfg.collections:
            return [f"(no catalogue.collections entry for {card}: not harvested from {self.url})"]
        body = self.body(card, start - EDGE_MARGIN, end + EDGE_MARGIN, aoi)
        return [f"POST {self.url}/search {json.dumps(body)}"]

    def search(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any,
               report: HarvestReport) -> Iterator[SceneRecord]:
        """The card's normalised records over ``aoi`` sensed in ``[start, end]``.

        A card without a collection in ``catalogue.collections`` yields nothing (logged).

        Raises
        ------
        HarvestError
            HTTP error after the retries, a page that stays unreadable, a repeating next
            link, a window that cannot be split below the cap.
        """
        if card not in self.cfg.collections:
            log.warning("%s: no catalogue.collections entry for %s: not harvested from this source",
                        self.name, card)
            return
        for raw_page in self._window(card, start - EDGE_MARGIN, end + EDGE_MARGIN, aoi, report):
            for raw in raw_page.records:
                rec = _normalise_counted(raw, self.name, report, self.date_tolerance)
                if rec is not None and self._inside(rec, card, start, end, aoi, report) \
                        and cloud_ok(rec, self.cfg, report):
                    yield rec

    def _inside(self, rec: SceneRecord, card: str, start: dt.datetime, end: dt.datetime, aoi: Any,
                report: HarvestReport) -> bool:
        """Client-side check of what the server should have filtered: card, time, AOI."""
        why = None
        if rec.card != card:
            why = ("card", rec.card, f"a {rec.card} product in the {card} collection")
        elif not start - EDGE_MARGIN <= rec.obstime <= end + EDGE_MARGIN:
            why = ("obstime", rec.obstime.isoformat(), f"outside the window {start}..{end}")
        elif not shapely.intersects(shapely.from_wkt(rec.footprint_wkt), aoi):
            why = ("footprint", rec.footprint_wkt[:40], "does not intersect the AOI")
        if why is None:
            return True
        report.skip(SkippedRecord(rec.reference, why[0], why[1], why[2], "filtered"))
        return False

    def _window(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any,
                report: HarvestReport) -> Iterator[Page]:
        """The pages of one window (one retry of the whole window on an unreadable page)."""
        for attempt in (1, 2):
            try:
                split = yield from self._pages(card, start, end, aoi, report)
            except ValueError as exc:      # json.JSONDecodeError: a truncated page
                if attempt == 2:
                    raise HarvestError(f"{card} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}: "
                                       f"{self.name} answered invalid JSON twice ({exc})") from None
                log.warning("%s: a page of %s %s..%s is not JSON (%s): searching the window again",
                            self.name, card, start, end, exc)
                continue
            if split:
                for a, b in split_window(card, start, end, self.cfg, report, split):
                    yield from self._window(card, a, b, aoi, report)
            return

    def _pages(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any,
               report: HarvestReport) -> Generator[Page, None, str | None]:
        """Page through one search; returns a split reason when the window is over the cap."""
        from pystac_client.exceptions import APIError
        from pystac_client.item_search import ItemSearch

        body = self.body(card, start, end, aoi)
        search = ItemSearch(url=f"{self.url}/search", method="POST", stac_io=self.stac_io,
                            collections=body["collections"], intersects=body["intersects"],
                            datetime=body["datetime"], limit=body["limit"], query=body.get("query"),
                            filter=body.get("filter"), filter_lang=body.get("filter-lang"))
        wanted = frozenset(body["collections"])
        last_next, n = None, 0
        try:
            for n, doc in enumerate(search.pages_as_dicts(), 1):
                where = f"{card} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} page {n}"
                try:
                    page = parse_stac(doc, self.url, wanted)
                except HarvestError as exc:
                    raise HarvestError(f"{where}: {exc}") from None
                report.pages += 1
                if n == 1 and page.total is not None and page.total > self.cfg.cap:
                    return f"{page.total} items matched, cap {self.cfg.cap}"
                log.info("%s %s: %d items (%s matched)", self.name, where, len(page.records),
                         page.total if page.total is not None else "?")
                yield page
                if page.next_url is not None and page.next_url == last_next:
                    raise HarvestError(f"{where}: the server repeats the same next link: {page.next_url[:200]}")
                last_next = page.next_url
                if n >= self.cfg.max_pages and page.next_url:
                    raise HarvestError(f"{where}: more than catalogue.max_pages {self.cfg.max_pages} pages")
        except APIError as exc:
            status = getattr(exc, "status_code", None)
            raise HarvestError(f"{card} {start:%Y-%m-%d}..{end:%Y-%m-%d} page {n + 1}: {self.name} answered "
                               f"HTTP {status}: {str(exc)[:300]}") from None
        return None
