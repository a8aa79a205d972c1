"""Catalogue sources: where a harvest reads scene records from.

* ``resto`` (:class:`RestoSource`): resto OpenSearch as served by CREODIAS and other DIAS
  (CDSE switched its resto catalogue off in March 2026),
  ``.../resto/api/collections/{Sentinel1|Sentinel2}/search.json`` (GeoJSON) or
  ``search.atom`` (Atom, parsed with lxml). Query parameters ``startDate``,
  ``completionDate``, ``geometry`` (WKT), ``productType``, ``maxRecords``, ``page``,
  ``sortParam=startDate``. Pagination is followed to the end. When a query hits the
  server's cap (CREODIAS 2000 records, an offset limit) the time window is split in
  two and each half harvested, recursively; a window that cannot be split further raises
  :class:`~cbm_ops.errors.HarvestError` instead of truncating silently.
* ``offline`` (:class:`OfflineSource`): a directory of saved responses (resto GeoJSON,
  Atom, STAC Items or ItemCollections), filtered by date window and AOI like a server would.

Every source yields normalised :class:`~.records.SceneRecord`; a bad record is reported in
the :class:`~.records.HarvestReport` and skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import shapely
from requests.adapters import HTTPAdapter
from shapely.geometry import MultiPolygon, Polygon
from urllib3.util.retry import Retry

from ..config import AoiConfig, CatalogueConfig
from ..errors import ConfigError, HarvestError
from .parsers import parse_atom, parse_file, parse_resto_json
from .records import HarvestReport, Page, RawRecord, SceneRecord, SkippedRecord, _normalise_counted

log = logging.getLogger(__name__)

# Queries reach this far beyond their window (and split windows overlap by it): a product
# whose sensing interval straddles a window edge is found whichever way the server matches
# startDate/completionDate. Duplicates are dropped (seen set, upsert on reference).
EDGE_MARGIN = dt.timedelta(hours=1)

# resto collection and productType per card (CREODIAS finder / CDSE names).
COLLECTION = {"s2": "Sentinel2", "bs": "Sentinel1", "c6": "Sentinel1"}
PRODUCT_TYPE = {"bs": "CARD-BS", "c6": "CARD-COH6"}
CARD_OF_PRODUCT_TYPE = {"CARD-BS": "bs", "CARD-COH6": "c6"}


def _window_card(rec: SceneRecord, card: str, start: dt.datetime, end: dt.datetime) -> bool:
    return rec.card == card and start <= rec.obstime <= end


class OfflineSource:
    """Saved responses in a directory (``*.json``, ``*.geojson``, ``*.xml``, ``*.atom``).

    The files are read once per source object; each search filters the normalised
    records by card, sensing time and AOI, as a server would. An unreadable file is
    reported (kind ``file``) and the other files are used; a bad record skips only itself.
    """

    def __init__(self, directory: Path, date_tolerance: dt.timedelta = dt.timedelta(hours=1)):
        if not directory.is_dir():
            raise HarvestError(f"offline catalogue directory {directory} does not exist")
        self.directory = directory
        self.name = f"offline:{directory.name}"
        self.date_tolerance = date_tolerance
        self._records: list[SceneRecord] | None = None

    def _load(self, report: HarvestReport) -> list[SceneRecord]:
        if self._records is None:
            self._records = []
            files = sorted(p for p in self.directory.rglob("*")
                           if p.suffix.lower() in (".json", ".geojson", ".xml", ".atom"))
            for path in files:
                try:
                    page = parse_file(path)
                except (HarvestError, OSError) as exc:
                    report.skip(SkippedRecord(path.name, "file", "", f"unreadable response file: {exc}", "file"))
                    continue
                report.pages += 1
                for raw in page.records:
                    rec = _normalise_counted(raw, self.name, report, self.date_tolerance)
                    if rec is not None:
                        self._records.append(rec)
        return self._records

    def search(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any,
               report: HarvestReport) -> Iterator[SceneRecord]:
        for rec in self._load(report):
            if _window_card(rec, card, start, end) and \
                    shapely.intersects(shapely.from_wkt(rec.footprint_wkt), aoi):
                yield rec


@dataclass(frozen=True)
class Query:
    """One resto search: collection, product type and extra parameters; ``label`` for logs."""

    label: str
    collection: str
    product_type: str
    extra: tuple[tuple[str, str], ...] = ()


class RestoSource:
    """resto OpenSearch (CDSE, CREODIAS): JSON or Atom, paged, window-splitting."""

    def __init__(self, cfg: CatalogueConfig, session: requests.Session | None = None,
                 date_tolerance: dt.timedelta = dt.timedelta(hours=1)):
        self.cfg = cfg
        self.name = f"resto:{cfg.url.split('/')[2] if '//' in cfg.url else cfg.url}"
        self.date_tolerance = date_tolerance
        self.session = session or requests.Session()
        retry = Retry(total=cfg.retries, backoff_factor=1.0, status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=frozenset(["GET"]), respect_retry_after_header=True,
                      raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def _url(self, collection: str) -> str:
        url = self.cfg.url.format(collection=collection)
        if self.cfg.format == "atom" and url.endswith(".json"):
            url = url[: -len(".json")] + ".atom"
        return url

    def _params(self, query: Query, start: dt.datetime, end: dt.datetime, aoi_wkt: str, page: int) -> dict:
        return {
            "startDate": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "completionDate": end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "geometry": aoi_wkt,
            "productType": query.product_type,
            **dict(query.extra),
            "maxRecords": self.cfg.page_size,
            "page": page,
            "sortParam": "startDate",
            "sortOrder": "ascending",
        }

    def _get(self, url: str, params: dict | None) -> requests.Response:
        try:
            return self.session.get(url, params=params, timeout=self.cfg.timeout_s)
        except requests.RequestException as exc:
            raise HarvestError(f"catalogue {self.name} unreachable: {type(exc).__name__}: {exc}") from None

    def _parse(self, resp: requests.Response, where: str) -> Page:
        if self.cfg.format == "atom":
            try:
                return parse_atom(resp.content)
            except HarvestError as exc:
                raise HarvestError(f"{where}: {exc}") from None
        try:
            doc = resp.json()
        except ValueError as exc:
            raise HarvestError(f"{where}: catalogue answered invalid JSON ({exc}): {resp.text[:200]!r}") from None
        try:
            return parse_resto_json(doc)
        except HarvestError as exc:
            raise HarvestError(f"{where}: {exc}") from None

    def card_query(self, card: str) -> Query:
        ptype = PRODUCT_TYPE.get(card, self.cfg.s2_product_type)
        return Query(card, COLLECTION[card], ptype)

    def search(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any,
               report: HarvestReport) -> Iterator[SceneRecord]:
        for raw in self.search_raw(self.card_query(card), start, end, aoi, report):
            rec = _normalise_counted(raw, self.name, report, self.date_tolerance)
            if rec is not None and rec.card == card:
                yield rec

    def search_raw(self, query: Query, start: dt.datetime, end: dt.datetime, aoi: Any,
                   report: HarvestReport) -> Iterator[RawRecord]:
        """All raw records of ``query`` over ``aoi`` sensed in ``[start, end]`` (paged,
        capped windows split; records are not normalised).

        Raises
        ------
        HarvestError
            On an HTTP error, an unreadable page or a window that stays above the cap.
        """
        aoi_wkt = _query_wkt(aoi)
        yield from self._window(query, start - EDGE_MARGIN, end + EDGE_MARGIN, aoi_wkt, report)

    def _window(self, query: Query, start: dt.datetime, end: dt.datetime, aoi_wkt: str,
                report: HarvestReport) -> Iterator[RawRecord]:
        """Harvest one window to the end; split it when the server caps the query."""
        url = self._url(query.collection)
        card = query.label
        page_no, read, total = 1, 0, None
        capped = False
        while True:
            resp = self._get(url, self._params(query, start, end, aoi_wkt, page_no))
            where = f"{card} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} page {page_no}"
            if resp.status_code == 400 and page_no > 1:
                capped = True          # CDSE/CREODIAS refuse offsets beyond their limit
                break
            if resp.status_code != 200:
                raise HarvestError(f"{where}: HTTP {resp.status_code}: {resp.text[:300]}")
            page = self._parse(resp, where)
            report.pages += 1
            if total is None:
                total = page.total
                if total is not None and total > self.cfg.max_per_query:
                    capped = True      # known in advance: do not page through a capped query
                    break
            n = len(page.records)
            read += n
            log.info("%s %s..%s page %d: %d records (%d of %s)", card, start.isoformat(),
                     end.isoformat(), page_no, n, read, total if total is not None else "?")
            yield from page.records
            per_page = min(self.cfg.page_size, page.items_per_page or self.cfg.page_size)
            if total is not None and read >= total:
                break
            if read >= self.cfg.max_per_query:
                capped = True          # at the cap: whatever the last page looked like
                break
            if n == 0:
                if total is not None and read < total:
                    capped = True      # server stopped serving before the reported total
                break
            if total is None and n < per_page:
                break
            page_no += 1
        if not capped:
            return
        span = end - start
        if span <= dt.timedelta(hours=self.cfg.min_window_hours):
            raise HarvestError(f"{card} window {start}..{end} still exceeds the catalogue cap "
                               f"({total} records > {self.cfg.max_per_query}); lower "
                               "catalogue.min_window_hours or raise max_per_query")
        mid = start + span / 2
        # The halves overlap: some resto versions match completionDate against the
        # product's completion, so a product straddling mid would fit neither half.
        overlap = min(EDGE_MARGIN, span / 8)
        report.splits += 1
        log.info("%s %s..%s is capped (%s records, cap %d): splitting at %s", card,
                 start.isoformat(), end.isoformat(), total, self.cfg.max_per_query, mid.isoformat())
        yield from self._window(query, start, mid + overlap, aoi_wkt, report)
        yield from self._window(query, mid - overlap, end, aoi_wkt, report)


def _query_wkt(aoi: Any) -> str:
    """A POLYGON for the query URL: the AOI's single polygon, else its convex hull;
    the envelope when that is still long (the exact AOI filters scenes at enqueue)."""
    geom = aoi
    if isinstance(geom, MultiPolygon) and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    if not isinstance(geom, Polygon) or len(geom.exterior.coords) > 200:
        geom = shapely.convex_hull(geom)
    if len(geom.exterior.coords) > 200:
        geom = shapely.envelope(geom)
    return shapely.to_wkt(geom, rounding_precision=6)



def make_source(cfg: AoiConfig) -> OfflineSource | RestoSource:
    """The catalogue source configured for an AOI."""
    tol = dt.timedelta(hours=cfg.harvest.date_tolerance_hours)
    if cfg.catalogue.source == "offline":
        path = cfg.resolve(cfg.catalogue.path)
        if path is None:
            raise ConfigError(f"AOI {cfg.name}: catalogue.source offline needs catalogue.path")
        return OfflineSource(path, date_tolerance=tol)
    return RestoSource(cfg.catalogue, date_tolerance=tol)

