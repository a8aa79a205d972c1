"""Catalogue harvest: CARD scenes over an AOI into ``dias_catalogue``.

Sources
-------
* ``resto``: resto OpenSearch as served by the Copernicus Data Space Ecosystem and
  CREODIAS, ``.../resto/api/collections/{Sentinel1|Sentinel2}/search.json`` (GeoJSON) or
  ``search.atom`` (Atom, parsed with lxml). Query parameters ``startDate``,
  ``completionDate``, ``geometry`` (WKT), ``productType``, ``maxRecords``, ``page``,
  ``sortParam=startDate``. Pagination is followed to the end. When a query hits the
  server's cap (CREODIAS 2000 records, CDSE an offset limit) the time window is split in
  two and each half harvested, recursively; a window that cannot be split further raises
  :class:`HarvestError` instead of truncating silently.
* ``offline``: a directory of saved responses (resto GeoJSON, Atom, STAC Items or
  ItemCollections), filtered by date window and AOI like a server would.

Every record is normalised (:func:`normalise`) and upserted on ``reference``: a
re-harvest is a no-op, a republished baseline is a new row (the older one, if not yet
processed, becomes ``Superseded``). A bad record is logged and skipped; the rest commit.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import shapely
from lxml import etree
from requests.adapters import HTTPAdapter
from shapely.geometry import MultiPolygon, Polygon, shape
from urllib3.util.retry import Retry

from . import naming
from .config import CARD_STAGES, AoiConfig, CatalogueConfig
from .db import q, transaction

log = logging.getLogger(__name__)

# Queries reach this far beyond their window (and split windows overlap by it): a product
# whose sensing interval straddles a window edge is found whichever way the server matches
# startDate/completionDate. Duplicates are dropped (seen set, upsert on reference).
EDGE_MARGIN = dt.timedelta(hours=1)

# resto collection and productType per card (CREODIAS finder / CDSE names).
COLLECTION = {"s2": "Sentinel2", "bs": "Sentinel1", "c6": "Sentinel1"}
PRODUCT_TYPE = {"bs": "CARD-BS", "c6": "CARD-COH6"}


class HarvestError(RuntimeError):
    """The catalogue could not be read completely (the message says which window)."""


class RecordError(ValueError):
    """One catalogue record cannot be normalised (reported and skipped)."""


# --------------------------------------------------------------------------- records
@dataclass
class RawRecord:
    """A catalogue entry as read from a response, before normalisation."""

    title: str
    start: dt.datetime | None
    footprint: Any                 # shapely geometry (EPSG:4326) or None
    properties: dict[str, Any] = field(default_factory=dict)
    catalogue_id: str | None = None


@dataclass(frozen=True)
class SceneRecord:
    """A normalised ``dias_catalogue`` row."""

    reference: str
    obstime: dt.datetime           # UTC, naive
    sensor: str
    card: str
    footprint_wkt: str             # MultiPolygon, EPSG:4326
    tile: str | None
    epsg: int
    relative_orbit: int | None
    orbit_direction: str | None
    processing_baseline: str | None
    cloud_cover: float | None
    product_identifier: str
    catalogue_id: str | None
    source: str

    def row(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class Page:
    records: list[RawRecord]
    total: int | None              # totalResults when the server reports it
    items_per_page: int | None
    next_url: str | None


def _parse_time(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    s = str(value).strip().replace("Z", "+00:00")
    # resto sometimes writes nanoseconds; Python parses up to microseconds.
    if "." in s:
        head, frac = s.split(".", 1)
        digits = "".join(ch for ch in frac if ch.isdigit())
        tz = frac[len(digits):]
        s = f"{head}.{digits[:6]}{tz}"
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t


def _as_multipolygon(geom: Any) -> MultiPolygon:
    """Footprint as a valid MultiPolygon (repaired with GEOS make_valid if needed)."""
    if geom is None or geom.is_empty:
        raise RecordError("no footprint")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    polys: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon):
            polys.append(part)
        elif isinstance(part, MultiPolygon):
            polys.extend(part.geoms)
    if not polys:
        raise RecordError(f"footprint is not polygonal ({geom.geom_type})")
    return MultiPolygon(polys)


def normalise(raw: RawRecord, source: str) -> SceneRecord | None:
    """Turn a catalogue entry into a ``dias_catalogue`` row.

    Returns
    -------
    SceneRecord or None
        ``None`` for products that are not S2 L2A, CARD-BS or CARD-COH6 (skipped).

    Raises
    ------
    RecordError
        If the name, time or footprint is unusable.
    """
    props = raw.properties
    try:
        name = naming.parse(raw.title)
    except naming.ProductNameError as exc:
        raise RecordError(str(exc)) from None
    card = name.card
    ptype = str(props.get("productType") or "").upper()
    if card is None and name.mission.startswith("S1"):
        card = {"CARD-BS": "bs", "CARD-COH6": "c6"}.get(ptype)
    if card is None:
        return None
    obstime = raw.start or name.sensing_start
    footprint = _as_multipolygon(raw.footprint)
    if card == "s2":
        epsg = naming.utm_epsg_for_tile(name.tile)
    else:
        c = footprint.centroid
        epsg = naming.utm_epsg_for_lonlat(c.x, c.y)
    direction = props.get("orbitDirection") or props.get("sat:orbit_state")
    rel = props.get("relativeOrbitNumber") or props.get("sat:relative_orbit") or name.relative_orbit
    cloud = props.get("cloudCover", props.get("eo:cloud_cover"))
    baseline = name.processing_baseline
    if baseline is None and props.get("processingBaseline") not in (None, ""):
        baseline = str(props["processingBaseline"])[:5]
    ident = props.get("productIdentifier")
    if not ident or not str(ident).startswith("/"):
        ident = "/eodata/" + naming.store_path(name.reference, card, obstime)
    return SceneRecord(
        reference=name.reference, obstime=obstime, sensor=name.sensor, card=card,
        footprint_wkt=footprint.wkt, tile=name.tile, epsg=epsg,
        relative_orbit=int(rel) if rel not in (None, "") else None,
        orbit_direction=str(direction).upper() if direction else None,
        processing_baseline=baseline,
        cloud_cover=float(cloud) if cloud not in (None, "") else None,
        product_identifier=str(ident), catalogue_id=raw.catalogue_id, source=source)


# --------------------------------------------------------------------------- parsers
def parse_resto_json(doc: dict[str, Any]) -> Page:
    """Parse a resto GeoJSON search response (CDSE / CREODIAS finder).

    Raises
    ------
    HarvestError
        If the document is not a FeatureCollection.
    """
    if doc.get("type") != "FeatureCollection":
        raise HarvestError(f"not a resto FeatureCollection: {str(doc)[:200]}")
    props = doc.get("properties") or {}
    records = []
    for f in doc.get("features") or []:
        p = f.get("properties") or {}
        geom = shape(f["geometry"]) if f.get("geometry") else None
        title = p.get("title") or f.get("id") or ""
        records.append(RawRecord(title=title, start=_parse_time(p.get("startDate")),
                                 footprint=geom, properties=p, catalogue_id=f.get("id")))
    next_url = next((lk.get("href") for lk in props.get("links") or [] if lk.get("rel") == "next"), None)
    total = props.get("totalResults")
    return Page(records=records, total=int(total) if total is not None else None,
                items_per_page=props.get("itemsPerPage"), next_url=next_url)


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _latlon_polygon(text: str) -> Polygon:
    v = [float(x) for x in text.replace(",", " ").split()]
    return Polygon(list(zip(v[1::2], v[0::2], strict=True)))   # GeoRSS/GML order is lat lon


def parse_atom(content: bytes) -> Page:
    """Parse an Atom OpenSearch feed (resto ``search.atom`` and DIAS variants).

    Footprints come from ``georss:polygon``, ``georss:where/gml:Polygon//gml:posList`` or
    ``georss:box`` (all lat/lon order); the start time from ``gml:beginPosition``,
    ``*:sensingStartDate``, ``dc:date`` or ``published``. Other leaf elements become
    properties by local name (``cloudCover``, ``orbitDirection``, ``productIdentifier``...).

    Raises
    ------
    HarvestError
        If the content is not XML or not an Atom feed.
    """
    try:
        root = etree.fromstring(content, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise HarvestError(f"catalogue answered invalid XML: {exc}") from None
    if _local(root) != "feed":
        raise HarvestError(f"not an Atom feed: <{_local(root)}>")
    total = ipp = None
    next_url = None
    records = []
    for el in root:
        tag = _local(el) if isinstance(el.tag, str) else ""
        if tag == "totalResults":
            total = int(el.text)
        elif tag == "itemsPerPage":
            ipp = int(el.text)
        elif tag == "link" and el.get("rel") == "next":
            next_url = el.get("href")
        elif tag == "entry":
            props: dict[str, Any] = {}
            geom = None
            start = None
            for sub in el.iter():
                if not isinstance(sub.tag, str):
                    continue
                name = _local(sub)
                text = (sub.text or "").strip()
                if name == "polygon" and geom is None:
                    geom = _latlon_polygon(text)
                elif name == "posList" and geom is None:
                    geom = _latlon_polygon(text)
                elif name == "box" and geom is None:
                    s, w, n, e = (float(x) for x in text.split())
                    geom = shapely.box(w, s, e, n)
                elif name in ("beginPosition", "sensingStartDate", "startDate") and start is None:
                    start = _parse_time(text)
                elif len(sub) == 0 and text and name not in props:
                    props[name] = text
            if start is None:
                start = _parse_time(props.get("date") or props.get("published"))
            title = props.get("title") or props.get("identifier") or props.get("id") or ""
            records.append(RawRecord(title=title, start=start, footprint=geom, properties=props,
                                     catalogue_id=props.get("id")))
    return Page(records=records, total=total, items_per_page=ipp, next_url=next_url)


def parse_stac(doc: dict[str, Any]) -> Page:
    """Parse a STAC Item or ItemCollection of Sentinel-2 L2A items.

    The product name comes from ``s2:product_uri`` or ``sentinel:product_id``.
    """
    feats = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    records = []
    for f in feats or []:
        p = f.get("properties") or {}
        title = p.get("s2:product_uri") or p.get("sentinel:product_id") or f.get("id") or ""
        records.append(RawRecord(title=title, start=_parse_time(p.get("datetime")),
                                 footprint=shape(f["geometry"]) if f.get("geometry") else None,
                                 properties=p, catalogue_id=f.get("id")))
    return Page(records=records, total=len(records), items_per_page=None, next_url=None)


def parse_file(path: Path) -> Page:
    """Parse a saved response file by its content (resto JSON, STAC, or Atom XML)."""
    data = path.read_bytes()
    if data.lstrip()[:1] == b"<":
        return parse_atom(data)
    doc = json.loads(data)
    feats = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    if feats and "stac_version" in feats[0]:
        return parse_stac(doc)
    return parse_resto_json(doc)


# --------------------------------------------------------------------------- sources
def _window_card(rec: SceneRecord, card: str, start: dt.datetime, end: dt.datetime) -> bool:
    return rec.card == card and start <= rec.obstime <= end


class OfflineSource:
    """Saved responses in a directory (``*.json``, ``*.geojson``, ``*.xml``, ``*.atom``).

    The files are read once per source object; each search filters the normalised
    records by card, sensing time and AOI, as a server would.
    """

    def __init__(self, directory: Path):
        if not directory.is_dir():
            raise HarvestError(f"offline catalogue directory {directory} does not exist")
        self.directory = directory
        self.name = f"offline:{directory.name}"
        self._records: list[SceneRecord] | None = None

    def _load(self, report: HarvestReport) -> list[SceneRecord]:
        if self._records is None:
            self._records = []
            files = sorted(p for p in self.directory.rglob("*")
                           if p.suffix.lower() in (".json", ".geojson", ".xml", ".atom"))
            for path in files:
                try:
                    page = parse_file(path)
                except (HarvestError, ValueError, KeyError) as exc:
                    report.bad(path.name, f"unreadable response file: {exc}")
                    continue
                report.pages += 1
                for raw in page.records:
                    rec = _normalise_counted(raw, self.name, report)
                    if rec is not None:
                        self._records.append(rec)
        return self._records

    def search(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any,
               report: HarvestReport) -> Iterator[SceneRecord]:
        for rec in self._load(report):
            if _window_card(rec, card, start, end) and \
                    shapely.intersects(shapely.from_wkt(rec.footprint_wkt), aoi):
                yield rec


class RestoSource:
    """resto OpenSearch (CDSE, CREODIAS): JSON or Atom, paged, window-splitting."""

    def __init__(self, cfg: CatalogueConfig, session: requests.Session | None = None):
        self.cfg = cfg
        self.name = f"resto:{cfg.url.split('/')[2] if '//' in cfg.url else cfg.url}"
        self.session = session or requests.Session()
        retry = Retry(total=cfg.retries, backoff_factor=1.0, status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=frozenset(["GET"]), respect_retry_after_header=True,
                      raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def _url(self, card: str) -> str:
        url = self.cfg.url.format(collection=COLLECTION[card])
        if self.cfg.format == "atom" and url.endswith(".json"):
            url = url[: -len(".json")] + ".atom"
        return url

    def _params(self, card: str, start: dt.datetime, end: dt.datetime, aoi_wkt: str, page: int) -> dict:
        return {
            "startDate": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "completionDate": end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "geometry": aoi_wkt,
            "productType": PRODUCT_TYPE.get(card, self.cfg.s2_product_type),
            "maxRecords": self.cfg.page_size,
            "page": page,
            "sortParam": "startDate",
            "sortOrder": "ascending",
        }

    def _get(self, url: str, params: dict | None) -> requests.Response:
        resp = self.session.get(url, params=params, timeout=self.cfg.timeout_s)
        return resp

    def _parse(self, resp: requests.Response) -> Page:
        if self.cfg.format == "atom":
            return parse_atom(resp.content)
        try:
            return parse_resto_json(resp.json())
        except ValueError as exc:
            raise HarvestError(f"catalogue answered invalid JSON: {exc}") from None

    def search(self, card: str, start: dt.datetime, end: dt.datetime, aoi: Any,
               report: HarvestReport) -> Iterator[SceneRecord]:
        aoi_wkt = _query_wkt(aoi)
        yield from self._window(card, start - EDGE_MARGIN, end + EDGE_MARGIN, aoi_wkt, report)

    def _window(self, card: str, start: dt.datetime, end: dt.datetime, aoi_wkt: str,
                report: HarvestReport) -> Iterator[SceneRecord]:
        """Harvest one window to the end; split it when the server caps the query."""
        url = self._url(card)
        page_no, read, total = 1, 0, None
        capped = False
        while True:
            resp = self._get(url, self._params(card, start, end, aoi_wkt, page_no))
            if resp.status_code == 400 and page_no > 1:
                capped = True          # CDSE/CREODIAS refuse offsets beyond their limit
                break
            if resp.status_code != 200:
                raise HarvestError(f"{card} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} page {page_no}: "
                                   f"HTTP {resp.status_code}: {resp.text[:300]}")
            page = self._parse(resp)
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
            for raw in page.records:
                rec = _normalise_counted(raw, self.name, report)
                if rec is not None and rec.card == card:
                    yield rec
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
        yield from self._window(card, start, mid + overlap, aoi_wkt, report)
        yield from self._window(card, mid - overlap, end, aoi_wkt, report)


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


def _normalise_counted(raw: RawRecord, source: str, report: HarvestReport) -> SceneRecord | None:
    report.read += 1
    try:
        rec = normalise(raw, source)
    except RecordError as exc:
        report.bad(raw.title or "?", str(exc))
        return None
    if rec is None:
        report.not_card += 1
    return rec


def make_source(cfg: AoiConfig) -> OfflineSource | RestoSource:
    """The catalogue source configured for an AOI."""
    if cfg.catalogue.source == "offline":
        return OfflineSource(cfg.resolve(cfg.catalogue.path))
    return RestoSource(cfg.catalogue)


# --------------------------------------------------------------------------- harvest
@dataclass
class HarvestReport:
    """What one harvest read and wrote (logged and returned to the DAG)."""

    pages: int = 0
    read: int = 0
    not_card: int = 0
    inserted: int = 0
    existing: int = 0
    superseded: int = 0
    enqueued: int = 0
    splits: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def bad(self, what: str, why: str) -> None:
        log.warning("skipped catalogue record %s: %s", what, why)
        self.errors.append(f"{what}: {why}")

    def as_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["bad_records"] = len(self.errors)
        d["errors"] = self.errors[:20]
        return d


def aoi_geometry(conn, cfg: AoiConfig):
    """The AOI outline (shapely, EPSG:4326) from the ``aois`` table.

    Raises
    ------
    LookupError
        If the AOI row does not exist (import the parcels first).
    """
    row = conn.execute(q("aoi_get", schema=cfg.schema), {"name": cfg.name}).fetchone()
    if row is None:
        raise LookupError(f"AOI {cfg.name!r} has no row in {cfg.schema}.aois: run "
                          f"`python -m cbm_ops import-parcels --aoi {cfg.name}` first")
    return shapely.from_wkb(row[0])


def upsert(conn, schema: str, records: Iterable[SceneRecord], report: HarvestReport) -> list[int]:
    """Insert records not yet known (by reference); one savepoint per record.

    Returns
    -------
    list of int
        ``dias_catalogue.id`` of the inserted rows.
    """
    stmt = q("catalogue_upsert", schema=schema)
    ids = []
    for rec in records:
        try:
            with conn.transaction():
                row = conn.execute(stmt, rec.row()).fetchone()
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the harvest
            report.bad(rec.reference, f"database refused the record: {exc}")
            continue
        if row is None:
            report.existing += 1
        else:
            report.inserted += 1
            ids.append(row[0])
    return ids


def enqueue(conn, cfg: AoiConfig, start: dt.datetime | None = None,
            end: dt.datetime | None = None) -> int:
    """Create the pending stage rows of the AOI's scenes (idempotent).

    Scenes of configured cards whose footprint intersects the AOI get one
    ``scene_stages`` row per configured stage; existing rows are left alone.

    Returns
    -------
    int
        Number of stage rows created.
    """
    stages = [s for s in cfg.stages]
    cards = [next(c for c, st in CARD_STAGES.items() if s in st) for s in stages]
    cur = conn.execute(q("stages_enqueue", schema=cfg.schema),
                       {"aoi": cfg.name, "stages": stages, "cards": cards,
                        "start": start, "end": end})
    return cur.rowcount


def harvest(url: str, cfg: AoiConfig, start: dt.datetime, end: dt.datetime,
            cards: Iterable[str] | None = None, source: Any = None) -> HarvestReport:
    """Harvest the AOI's CARD scenes of ``[start, end]`` into ``dias_catalogue``.

    Parameters
    ----------
    url : str
        Database URL.
    cfg : AoiConfig
        The AOI (schema, catalogue source, cards).
    start, end : datetime
        Sensing-time window (UTC).
    cards : iterable of str, optional
        Subset of the AOI's cards (``s2``, ``bs``, ``c6``).
    source : optional
        A source object (tests); default from the AOI configuration.

    Returns
    -------
    HarvestReport

    Raises
    ------
    HarvestError
        If the catalogue cannot be read to the end (records read so far are kept).
    LookupError
        If the AOI row is missing.
    """
    t0 = time.perf_counter()
    report = HarvestReport()
    source = source or make_source(cfg)
    cards = [c for c in (cards or cfg.cards) if c in cfg.cards]
    with transaction(url) as conn:
        aoi = aoi_geometry(conn, cfg)
    for card in cards:
        batch: list[SceneRecord] = []
        seen: set[str] = set()
        try:
            for rec in source.search(card, start, end, aoi, report):
                if rec.reference in seen:
                    continue   # windows overlap at their boundary
                seen.add(rec.reference)
                batch.append(rec)
                if len(batch) >= 500:
                    _commit(url, cfg.schema, batch, report)
                    batch = []
        finally:
            _commit(url, cfg.schema, batch, report)   # keep what was read, also on error
        log.info("%s: %d %s scenes in the window", source.name, len(seen), card)
    with transaction(url) as conn:
        report.superseded = conn.execute(q("catalogue_supersede", schema=cfg.schema)).rowcount
        report.enqueued = enqueue(conn, cfg)
    report.seconds = round(time.perf_counter() - t0, 3)
    log.info("harvest %s %s..%s: %d pages, %d records read, %d new, %d known, %d not CARD, "
             "%d bad, %d superseded, %d stage rows queued, %d window splits, %.1f s",
             cfg.name, start.date(), end.date(), report.pages, report.read, report.inserted,
             report.existing, report.not_card, len(report.errors), report.superseded,
             report.enqueued, report.splits, report.seconds)
    return report


def _commit(url: str, schema: str, batch: list[SceneRecord], report: HarvestReport) -> None:
    if not batch:
        return
    with transaction(url) as conn:
        upsert(conn, schema, batch, report)
