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

Per-record isolation
--------------------
Parsers only take a document apart; every field of a record is converted and checked by
:func:`normalise`. A record whose name, sensing date, footprint, cloud cover, orbit or
product type is unusable is *skipped*: reported as (reference, field, value, reason) in the
:class:`HarvestReport` and the log, while the rest of its page or file is committed. A
sensing date that disagrees with the date in the product name by more than
``harvest.date_tolerance_hours`` is *flagged* and the name's date is used. Only a
document that cannot be read as a whole (not JSON/XML, not a FeatureCollection or Atom
feed, an HTTP error) raises :class:`HarvestError`.

Every record is upserted on ``reference``: a re-harvest is a no-op, a republished baseline
is a new row (the older one, if not yet processed, becomes ``Superseded``). Each harvest of
a card is recorded in ``harvest_log`` (window, times, ok/failed, counts);
:func:`widened_window` uses it to extend a scheduled run's window back over an outage.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

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
CARD_OF_PRODUCT_TYPE = {"CARD-BS": "bs", "CARD-COH6": "c6"}

# Relative orbits per mission family (ESA: S1 175 orbits per 12-day cycle, S2 143 per 10 days).
MAX_RELATIVE_ORBIT = {"S1": 175, "S2": 143}
# How many report lines the DAG's XCom and the final log line carry.
REPORT_LINES = 50


class HarvestError(RuntimeError):
    """The catalogue could not be read completely (the message says which window)."""


class RecordError(ValueError):
    """One catalogue record cannot be normalised (reported and skipped).

    Attributes
    ----------
    field : str
        The offending field (``startDate``, ``footprint``, ``cloudCover``, ``title`` ...).
    value : object
        Its value as read.
    """

    def __init__(self, reason: str, field: str = "record", value: Any = None):
        super().__init__(reason)
        self.field, self.value, self.reason = field, value, reason


class NotCardError(RecordError):
    """The record is a valid product but not S2 L2A, CARD-BS or CARD-COH6."""


# --------------------------------------------------------------------------- records
class AtomGeometry(NamedTuple):
    """A footprint as written in an Atom entry (converted by :func:`normalise`)."""

    kind: str          # polygon | posList | box (GeoRSS/GML, lat/lon order)
    text: str


@dataclass
class RawRecord:
    """A catalogue entry as read from a response, before normalisation.

    ``start`` and ``footprint`` hold what the document says (text, a GeoJSON mapping, an
    :class:`AtomGeometry`) or already converted values (datetime, shapely geometry);
    :func:`normalise` converts and checks them.
    """

    title: str
    start: Any
    footprint: Any
    properties: dict[str, Any] = field(default_factory=dict)
    catalogue_id: str | None = None
    start_field: str = "startDate"          # name of the date field in the source format
    problem: RecordError | None = None      # the parser could not even take the entry apart


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


@dataclass(frozen=True)
class SkippedRecord:
    """A record that was not committed, and why. ``kind``: ``bad`` (unusable field),
    ``not_card`` (a valid product we do not extract), ``file`` (unreadable offline file),
    ``database`` (refused by the database)."""

    reference: str
    field: str
    value: str
    reason: str
    kind: str = "bad"

    def line(self) -> str:
        if self.kind == "file":
            return f"[file] {self.reference}: {self.reason}"
        return f"[{self.kind}] {self.reference}: {self.field}={self.value}: {self.reason}"


@dataclass(frozen=True)
class FlaggedRecord:
    """A record committed with a corrected field (the catalogue's value was not used)."""

    reference: str
    field: str
    value: str
    used: str
    reason: str

    def line(self) -> str:
        return f"[flagged] {self.reference}: {self.field}={self.value}: {self.reason}; used {self.used}"


@dataclass
class Page:
    records: list[RawRecord]
    total: int | None              # totalResults when the server reports it
    items_per_page: int | None
    next_url: str | None


def one(cur) -> tuple[Any, ...]:
    """The row a statement returns (``RETURNING``, aggregates).

    Raises
    ------
    LookupError
        If it returned none.
    """
    row = cur.fetchone()
    if row is None:
        raise LookupError("the statement returned no row")
    return row


def dicts(cur) -> list[dict[str, Any]]:
    """All rows of a cursor as dicts by column name."""
    cols = [d.name for d in cur.description or ()]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _show(value: Any, limit: int = 80) -> str:
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 date/time as naive UTC (``None`` for empty values).

    Raises
    ------
    ValueError
        If the value is not an ISO 8601 date/time.
    """
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        t = value
    else:
        if not isinstance(value, str):
            raise ValueError(f"not a date/time string: {type(value).__name__}")
        s = value.strip().replace("Z", "+00:00")
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
        raise RecordError("no footprint", "footprint", None)
    if not all(math.isfinite(v) for v in shapely.get_coordinates(geom).ravel()):
        raise RecordError("footprint has non-finite coordinates", "footprint", geom.wkt[:60])
    try:
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
    except shapely.errors.GEOSException as exc:
        raise RecordError(f"unreadable footprint ({str(exc).splitlines()[0][:80]})", "footprint",
                          geom.wkt[:60]) from None
    polys: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon):
            polys.append(part)
        elif isinstance(part, MultiPolygon):
            polys.extend(part.geoms)
    polys = [p for p in polys if not p.is_empty and p.area > 0]
    if not polys:
        raise RecordError(f"footprint is not polygonal ({geom.geom_type})", "footprint", geom.wkt[:60])
    mp = MultiPolygon(polys)
    x0, y0, x1, y1 = mp.bounds
    if not (-180 <= x0 and x1 <= 180 and -90 <= y0 and y1 <= 90):
        raise RecordError(f"footprint outside lon/lat range (bounds {x0:g} {y0:g} {x1:g} {y1:g}): "
                          "not EPSG:4326 or lat/lon swapped", "footprint", mp.wkt[:60])
    return mp


def _latlon_polygon(text: str) -> Polygon:
    v = [float(x) for x in text.replace(",", " ").split()]
    return Polygon(list(zip(v[1::2], v[0::2], strict=True)))   # GeoRSS/GML order is lat lon


def footprint_of(raw: RawRecord) -> MultiPolygon:
    """The record's footprint as a valid MultiPolygon (EPSG:4326).

    Raises
    ------
    RecordError
        If it is absent, unreadable, not polygonal or outside lon/lat bounds.
    """
    fp = raw.footprint
    try:
        if fp is None:
            geom = None
        elif isinstance(fp, AtomGeometry):
            if fp.kind == "box":
                s, w, n, e = (float(x) for x in fp.text.split())
                geom = shapely.box(w, s, e, n)
            else:
                geom = _latlon_polygon(fp.text)
        elif isinstance(fp, dict):
            geom = shape(fp)
        else:
            geom = fp
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, shapely.errors.GEOSException) as exc:
        what = ("not lat/lon pairs of a closed ring" if isinstance(fp, AtomGeometry)
                else "not a valid GeoJSON geometry")
        raise RecordError(f"unreadable footprint: {what} ({type(exc).__name__})", "footprint",
                          fp.text if isinstance(fp, AtomGeometry) else fp) from None
    if geom is not None and not hasattr(geom, "is_empty"):
        raise RecordError("unreadable footprint", "footprint", fp)
    return _as_multipolygon(geom)


def _number(props: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, Any]:
    for k in keys:
        if props.get(k) not in (None, ""):
            return k, props[k]
    return keys[0], None


def _float_field(name: str, value: Any, lo: float, hi: float) -> float | None:
    if value in (None, ""):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        f = float(value)
    except (TypeError, ValueError, OverflowError):       # OverflowError: a 400-digit integer
        raise RecordError("not a number", name, value) from None
    if not math.isfinite(f) or not lo <= f <= hi:
        raise RecordError(f"outside [{lo:g}, {hi:g}]", name, value)
    return f


def _int_field(name: str, value: Any, lo: int, hi: int) -> int | None:
    f = _float_field(name, value, lo, hi)
    if f is None:
        return None
    if f != int(f):
        raise RecordError("not an integer", name, value)
    return int(f)


def normalise(raw: RawRecord, source: str, date_tolerance: dt.timedelta = dt.timedelta(hours=1)
              ) -> SceneRecord | None:
    """Turn a catalogue entry into a ``dias_catalogue`` row.

    Returns
    -------
    SceneRecord or None
        ``None`` for products that are not S2 L2A, CARD-BS or CARD-COH6 (skipped).

    Raises
    ------
    RecordError
        If the name, time, footprint, cloud cover, orbit or product type is unusable
        (``field`` and ``value`` say which).
    """
    try:
        return normalise_checked(raw, source, date_tolerance)[0]
    except NotCardError:
        return None


def normalise_checked(raw: RawRecord, source: str, date_tolerance: dt.timedelta = dt.timedelta(hours=1)
                      ) -> tuple[SceneRecord, list[FlaggedRecord]]:
    """:func:`normalise` that also returns the corrections it made.

    Checks, in order: the product name (Sentinel naming convention), the product type
    (S2 L2A, or an S1 name with ``_CARD_BS``/``_CARD_COH6`` or productType
    ``CARD-BS``/``CARD-COH6``; a productType that contradicts the name is an error), the
    sensing date (present, ISO 8601; more than ``date_tolerance`` away from the name's
    sensing start: flagged, the name's time is used), the footprint (GeoJSON/GML/GeoRSS,
    polygonal, within lon/lat bounds; repaired with ``make_valid``), cloud cover (number in
    [0, 100]), relative orbit (integer in 1..175 for S1, 1..143 for S2; disagreeing with the
    name: flagged, the name's is used) and orbit direction (ascending/descending, else
    flagged and dropped).

    Returns
    -------
    (SceneRecord, list of FlaggedRecord)

    Raises
    ------
    NotCardError
        For valid products that are not extracted (S2 L1C, S1 GRD/SLC ...).
    RecordError
        For unusable fields (see above).
    """
    if raw.problem is not None:
        raise raw.problem
    props = raw.properties if isinstance(raw.properties, dict) else {}
    title = raw.title
    if not isinstance(title, str) or not title.strip():
        raise RecordError("no product name", "title", title)
    try:
        name = naming.parse(title)
    except ValueError as exc:      # ProductNameError, or an impossible date in the name
        raise RecordError(str(exc), "title", title) from None
    ref = name.reference
    flags: list[FlaggedRecord] = []

    # ---- product type
    card = name.card
    ptype_raw = props.get("productType")
    ptype = str(ptype_raw or "").upper()
    if name.mission.startswith("S1"):
        by_type = CARD_OF_PRODUCT_TYPE.get(ptype)
        if card is not None and ptype.startswith("CARD") and by_type != card:
            raise RecordError(f"productType contradicts the name's {ref.rsplit('_', 2)[-2]}_{ref.rsplit('_', 1)[-1]} "
                              "suffix", "productType", ptype_raw)
        card = card or by_type
        if card is None:
            why = (f"unknown CARD product type {ptype_raw!r}" if ptype.startswith("CARD")
                   else f"not a CARD product (S1 {name.product_level}"
                        + (f", productType {ptype_raw!r})" if ptype_raw else ")"))
            raise NotCardError(why, "productType", ptype_raw)
    elif card is None:
        raise NotCardError(f"not a CARD product (S2 {name.product_level})", "title", title)

    # ---- sensing time
    start_raw = raw.start
    try:
        start = _parse_time(start_raw)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RecordError(f"not an ISO 8601 date/time ({exc})", raw.start_field, start_raw) from None
    if start is None:
        raise RecordError("no sensing date", raw.start_field, start_raw)
    obstime = start
    if abs(start - name.sensing_start) > date_tolerance:
        obstime = name.sensing_start
        flags.append(FlaggedRecord(
            ref, raw.start_field, _show(start_raw), obstime.isoformat(),
            f"{(start - name.sensing_start).total_seconds() / 3600:+.1f} h from the sensing start in the "
            f"product name (tolerance {date_tolerance.total_seconds() / 3600:g} h)"))

    # ---- footprint
    footprint = footprint_of(raw)
    if card == "s2":
        assert name.tile is not None
        epsg = naming.utm_epsg_for_tile(name.tile)
    else:
        c = footprint.centroid
        epsg = naming.utm_epsg_for_lonlat(c.x, c.y)

    # ---- numbers
    ck, cloud_raw = _number(props, ("cloudCover", "eo:cloud_cover"))
    cloud = _float_field(ck, cloud_raw, 0.0, 100.0)
    rk, rel_raw = _number(props, ("relativeOrbitNumber", "sat:relative_orbit"))
    rel = _int_field(rk, rel_raw, 1, MAX_RELATIVE_ORBIT[name.mission[:2]])
    if name.relative_orbit is not None:
        if rel is not None and rel != name.relative_orbit:
            flags.append(FlaggedRecord(ref, rk, _show(rel_raw), str(name.relative_orbit),
                                       "relative orbit disagrees with the product name"))
        rel = name.relative_orbit
    dk, direction_raw = _number(props, ("orbitDirection", "sat:orbit_state"))
    direction = str(direction_raw).upper() if direction_raw not in (None, "") else None
    if direction is not None and direction not in ("ASCENDING", "DESCENDING"):
        flags.append(FlaggedRecord(ref, dk, _show(direction_raw), "NULL",
                                   "orbit direction is neither ascending nor descending"))
        direction = None

    baseline = name.processing_baseline
    if baseline is None and props.get("processingBaseline") not in (None, ""):
        baseline = str(props["processingBaseline"])[:5]
    ident = props.get("productIdentifier")
    if not isinstance(ident, str) or not ident.startswith("/"):
        ident = "/eodata/" + naming.store_path(ref, card, obstime)
    cat_id = raw.catalogue_id
    rec = SceneRecord(
        reference=ref, obstime=obstime, sensor=name.sensor, card=card,
        footprint_wkt=footprint.wkt, tile=name.tile, epsg=epsg, relative_orbit=rel,
        orbit_direction=direction, processing_baseline=baseline, cloud_cover=cloud,
        product_identifier=ident, catalogue_id=str(cat_id) if cat_id is not None else None,
        source=source)
    return rec, flags


# --------------------------------------------------------------------------- parsers
def _feature_record(f: Any, *, title_keys: tuple[str, ...], start_keys: tuple[str, ...]) -> RawRecord:
    """One GeoJSON feature (resto or STAC) as a RawRecord; nothing is converted here."""
    if not isinstance(f, dict):
        return RawRecord(title="?", start=None, footprint=None,
                         problem=RecordError("feature is not a JSON object", "feature", _show(f)))
    p = f.get("properties")
    fid = f.get("id")
    if not isinstance(p, dict):
        return RawRecord(title=str(fid or "?"), start=None, footprint=None, catalogue_id=fid,
                         problem=RecordError("feature has no properties object", "properties", _show(p)))
    title = next((p[k] for k in title_keys if p.get(k)), None) or fid or ""
    start_key = next((k for k in start_keys if p.get(k) not in (None, "")), start_keys[0])
    return RawRecord(title=title if isinstance(title, str) else str(title), start=p.get(start_key),
                     footprint=f.get("geometry"), properties=p, catalogue_id=fid, start_field=start_key)


def _opt_int(doc: dict[str, Any], key: str, what: str) -> int | None:
    v = doc.get(key)
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        raise HarvestError(f"{what}: {key} is not a number: {_show(v)}") from None


def parse_resto_json(doc: Any) -> Page:
    """Parse a resto GeoJSON search response (CDSE / CREODIAS finder).

    Records are taken apart only; :func:`normalise` checks their fields.

    Raises
    ------
    HarvestError
        If the document is not a FeatureCollection (or its paging fields are unreadable).
    """
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise HarvestError(f"not a resto FeatureCollection: {str(doc)[:200]}")
    props = doc.get("properties") or {}
    if not isinstance(props, dict):
        raise HarvestError(f"resto response properties is not an object: {_show(props)}")
    feats = doc.get("features") or []
    if not isinstance(feats, list):
        raise HarvestError(f"resto response features is not a list: {_show(feats)}")
    records = [_feature_record(f, title_keys=("title",), start_keys=("startDate",)) for f in feats]
    links = props.get("links") or []
    next_url = next((lk.get("href") for lk in links if isinstance(lk, dict) and lk.get("rel") == "next"), None)
    return Page(records=records, total=_opt_int(props, "totalResults", "resto response"),
                items_per_page=_opt_int(props, "itemsPerPage", "resto response"), next_url=next_url)


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def parse_atom(content: bytes) -> Page:
    """Parse an Atom OpenSearch feed (resto ``search.atom`` and DIAS variants).

    Footprints come from ``georss:polygon``, ``georss:where/gml:Polygon//gml:posList`` or
    ``georss:box`` (all lat/lon order); the start time from ``gml:beginPosition``,
    ``*:sensingStartDate``, ``*:startDate``, else ``dc:date`` or ``published`` (a
    publication date is caught by the date check of :func:`normalise`). Other leaf elements
    become properties by local name (``cloudCover``, ``orbitDirection``,
    ``productIdentifier``...). Fields are converted by :func:`normalise`.

    Raises
    ------
    HarvestError
        If the content is not XML, not an Atom feed, or its paging fields are unreadable.
    """
    try:
        root = etree.fromstring(content, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise HarvestError(f"catalogue answered invalid XML: {exc}") from None
    if root is None or _local(root) != "feed":
        raise HarvestError(f"not an Atom feed: <{_local(root) if root is not None else ''}>")
    head: dict[str, Any] = {}
    next_url = None
    records = []
    for el in root:
        tag = _local(el) if isinstance(el.tag, str) else ""
        if tag in ("totalResults", "itemsPerPage"):
            head[tag] = (el.text or "").strip()
        elif tag == "link" and el.get("rel") == "next":
            next_url = el.get("href")
        elif tag == "entry":
            props: dict[str, Any] = {}
            geom: AtomGeometry | None = None
            start = None
            start_field = "beginPosition"
            for sub in el.iter():
                if not isinstance(sub.tag, str):
                    continue
                name = _local(sub)
                text = (sub.text or "").strip()
                if name in ("polygon", "posList", "box") and geom is None:
                    geom = AtomGeometry(name, text)
                elif name in ("beginPosition", "sensingStartDate", "startDate") and start is None:
                    start, start_field = text, name
                elif len(sub) == 0 and text and name not in props:
                    props[name] = text
            if start is None:
                for k in ("date", "published"):
                    if props.get(k):
                        start, start_field = props[k], k
                        break
            title = props.get("title") or props.get("identifier") or props.get("id") or ""
            records.append(RawRecord(title=title, start=start, footprint=geom, properties=props,
                                     catalogue_id=props.get("id"), start_field=start_field))
    return Page(records=records, total=_opt_int(head, "totalResults", "Atom feed"),
                items_per_page=_opt_int(head, "itemsPerPage", "Atom feed"), next_url=next_url)


def parse_stac(doc: dict[str, Any]) -> Page:
    """Parse a STAC Item or ItemCollection of Sentinel-2 L2A items.

    The product name comes from ``s2:product_uri`` or ``sentinel:product_id``, the date
    from ``datetime`` (else ``start_datetime``). Fields are converted by :func:`normalise`.
    """
    feats = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    if not isinstance(feats, list):
        raise HarvestError(f"STAC features is not a list: {_show(feats)}")
    records = [_feature_record(f, title_keys=("s2:product_uri", "sentinel:product_id"),
                               start_keys=("datetime", "start_datetime")) for f in feats]
    return Page(records=records, total=len(records), items_per_page=None, next_url=None)


def parse_file(path: Path) -> Page:
    """Parse a saved response file by its content (resto JSON, STAC, or Atom XML).

    Raises
    ------
    HarvestError
        If the file is neither JSON nor XML of a known kind.
    """
    data = path.read_bytes()
    if data.lstrip()[:1] == b"<":
        return parse_atom(data)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HarvestError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise HarvestError(f"not a JSON object: {_show(doc)}")
    feats = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    if isinstance(feats, list) and feats and isinstance(feats[0], dict) and "stac_version" in feats[0]:
        return parse_stac(doc)
    return parse_resto_json(doc)


# --------------------------------------------------------------------------- sources
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


def _normalise_counted(raw: RawRecord, source: str, report: HarvestReport,
                       date_tolerance: dt.timedelta = dt.timedelta(hours=1)) -> SceneRecord | None:
    """Normalise one record; a failure is reported in ``report`` and gives ``None``."""
    report.read += 1
    try:
        rec, flags = normalise_checked(raw, source, date_tolerance)
    except NotCardError as exc:
        report.not_card += 1
        report.skip(SkippedRecord(_ref(raw), exc.field, _show(exc.value), exc.reason, "not_card"))
        return None
    except RecordError as exc:
        report.skip(SkippedRecord(_ref(raw), exc.field, _show(exc.value), exc.reason, "bad"))
        return None
    for f in flags:
        report.flag(f)
    return rec


def _ref(raw: RawRecord) -> str:
    title = raw.title if isinstance(raw.title, str) and raw.title else None
    return naming.strip_extension(title) if title else str(raw.catalogue_id or "?")


def make_source(cfg: AoiConfig) -> OfflineSource | RestoSource:
    """The catalogue source configured for an AOI."""
    tol = dt.timedelta(hours=cfg.harvest.date_tolerance_hours)
    if cfg.catalogue.source == "offline":
        path = cfg.resolve(cfg.catalogue.path)
        assert path is not None
        return OfflineSource(path, date_tolerance=tol)
    return RestoSource(cfg.catalogue, date_tolerance=tol)


# --------------------------------------------------------------------------- harvest
@dataclass
class HarvestReport:
    """What one harvest read and wrote (logged and returned to the DAG).

    ``skipped`` lists every record that was not committed (bad ones, non-CARD products,
    unreadable files, database refusals), ``flagged`` every committed record whose
    catalogue value was replaced; ``errors`` are the lines of the bad ones.
    """

    pages: int = 0
    read: int = 0
    not_card: int = 0
    inserted: int = 0
    existing: int = 0
    superseded: int = 0
    enqueued: int = 0
    splits: int = 0
    errors: list[str] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)
    flagged: list[FlaggedRecord] = field(default_factory=list)
    seconds: float = 0.0
    log_ids: list[int] = field(default_factory=list)      # harvest_log rows of this harvest

    def skip(self, s: SkippedRecord) -> None:
        self.skipped.append(s)
        if s.kind == "not_card":
            log.info("skipped catalogue record %s", s.line())
        else:
            log.warning("skipped catalogue record %s", s.line())
            self.errors.append(s.line())

    def flag(self, f: FlaggedRecord) -> None:
        log.warning("catalogue record %s", f.line())
        self.flagged.append(f)

    def bad(self, what: str, why: str) -> None:
        """Report a skipped record with a free-text reason (kept for callers of 0.x)."""
        self.skip(SkippedRecord(what, "record", "", why, "bad"))

    @property
    def bad_records(self) -> int:
        return sum(1 for s in self.skipped if s.kind != "not_card")

    def counts(self) -> dict[str, int]:
        return {"pages": self.pages, "read": self.read, "inserted": self.inserted,
                "existing": self.existing, "not_card": self.not_card,
                "skipped": self.bad_records, "flagged": len(self.flagged)}

    def lines(self, limit: int | None = REPORT_LINES) -> list[str]:
        """Report lines: bad records, then flagged, then non-CARD products."""
        bad = [s.line() for s in self.skipped if s.kind != "not_card"]
        flagged = [f.line() for f in self.flagged]
        other = [s.line() for s in self.skipped if s.kind == "not_card"]
        out = bad + flagged + other
        return out if limit is None else out[:limit]

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": self.pages, "read": self.read, "not_card": self.not_card,
            "inserted": self.inserted, "existing": self.existing, "superseded": self.superseded,
            "enqueued": self.enqueued, "splits": self.splits, "seconds": self.seconds,
            "bad_records": self.bad_records, "flagged_records": len(self.flagged),
            "errors": self.errors[:20],
            "skipped": [s.__dict__ for s in self.skipped if s.kind != "not_card"][:REPORT_LINES],
            "flagged": [f.__dict__ for f in self.flagged][:REPORT_LINES],
            "not_card_examples": [s.line() for s in self.skipped if s.kind == "not_card"][:5],
            "log_ids": self.log_ids,
        }


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
            report.skip(SkippedRecord(rec.reference, "record", "", f"database refused the record: {exc}",
                                      "database"))
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
            cards: Iterable[str] | None = None, source: Any = None,
            widened_from: dt.datetime | None = None, note: str | None = None) -> HarvestReport:
    """Harvest the AOI's CARD scenes of ``[start, end]`` into ``dias_catalogue``.

    Each card's harvest is recorded in ``harvest_log`` (``running``, then ``ok`` with its
    counts or ``failed`` with the error). After the harvest, order items whose CARD
    product is now catalogued are marked ``harvested`` (:func:`cbm_ops.ordering.reconcile`).

    Parameters
    ----------
    url : str
        Database URL.
    cfg : AoiConfig
        The AOI (schema, catalogue source, cards, ``harvest.date_tolerance_hours``).
    start, end : datetime
        Sensing-time window (UTC, naive).
    cards : iterable of str, optional
        Subset of the AOI's cards (``s2``, ``bs``, ``c6``).
    source : optional
        A source object (tests); default from the AOI configuration.
    widened_from, note : optional
        Recorded in ``harvest_log``: the run's own start before :func:`widened_window`
        moved it, and why.

    Returns
    -------
    HarvestReport

    Raises
    ------
    HarvestError
        If the catalogue cannot be read to the end (records read so far are kept, the
        card's harvest_log row says ``failed``).
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
        before = report.counts()
        with transaction(url) as conn:
            log_id = one(conn.execute(q("harvest_log_start", schema=cfg.schema), {
                "card": card, "start": start, "end": end, "source": source.name,
                "widened_from": widened_from, "note": note}))[0]
        report.log_ids.append(log_id)
        batch: list[SceneRecord] = []
        seen: set[str] = set()
        try:
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
        except Exception as exc:
            _log_end(url, cfg.schema, log_id, "failed", report, before, f"{type(exc).__name__}: {exc}")
            raise
        _log_end(url, cfg.schema, log_id, "ok", report, before, None)
        log.info("%s: %d %s scenes in the window", source.name, len(seen), card)
    from .ordering import reconcile

    with transaction(url) as conn:
        report.superseded = conn.execute(q("catalogue_supersede", schema=cfg.schema)).rowcount
        report.enqueued = enqueue(conn, cfg)
        reconcile(conn, cfg)
    report.seconds = round(time.perf_counter() - t0, 3)
    log.info("harvest %s %s..%s: %d pages, %d records read, %d new, %d known, %d not CARD, "
             "%d bad (skipped), %d flagged, %d superseded, %d stage rows queued, %d window splits, %.1f s",
             cfg.name, start.date(), end.date(), report.pages, report.read, report.inserted,
             report.existing, report.not_card, report.bad_records, len(report.flagged),
             report.superseded, report.enqueued, report.splits, report.seconds)
    problems = [ln for ln in report.lines(None) if not ln.startswith("[not_card]")]
    if problems:
        log.warning("harvest %s: %d records skipped, %d flagged:\n  %s", cfg.name, report.bad_records,
                    len(report.flagged), "\n  ".join(problems[:REPORT_LINES])
                    + (f"\n  ... {len(problems) - REPORT_LINES} more" if len(problems) > REPORT_LINES else ""))
    return report


def _log_end(url: str, schema: str, log_id: int, status: str, report: HarvestReport,
             before: dict[str, int], error: str | None) -> None:
    after = report.counts()
    delta = {k: after[k] - before[k] for k in after}
    try:
        with transaction(url) as conn:
            conn.execute(q("harvest_log_end", schema=schema),
                         {"id": log_id, "status": status, "error": error, **delta})
    except Exception:  # noqa: BLE001 - never hide the harvest's own error behind this one
        if status == "ok":
            raise
        log.exception("could not record the failed harvest %d", log_id)


def _commit(url: str, schema: str, batch: list[SceneRecord], report: HarvestReport) -> None:
    if not batch:
        return
    with transaction(url) as conn:
        upsert(conn, schema, batch, report)


# --------------------------------------------------------------------------- window widening
def covered_intervals(url: str, cfg: AoiConfig, card: str, until: dt.datetime
                      ) -> list[tuple[dt.datetime, dt.datetime]]:
    """Sensing-time intervals of ``card`` harvested successfully, merged, up to ``until``.

    Each ``ok`` row of ``harvest_log`` covers ``[window_start, min(window_end, started_at)]``
    (a harvest cannot have seen products sensed after it ran). Intervals closer than
    :data:`EDGE_MARGIN` are merged (every query reaches that far beyond its window).
    """
    with transaction(url) as conn:
        rows = conn.execute(q("harvest_log_ok_intervals", schema=cfg.schema),
                            {"card": card, "until": until}).fetchall()
    merged: list[list[dt.datetime]] = []
    for a, b in rows:
        if b <= a:
            continue
        if merged and a <= merged[-1][1] + EDGE_MARGIN:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def widened_window(url: str, cfg: AoiConfig, card: str, start: dt.datetime, end: dt.datetime
                   ) -> tuple[dt.datetime, dt.datetime, str | None]:
    """Extend a scheduled run's harvest window back over an outage.

    The successful harvests of ``card`` (:func:`covered_intervals`) say which sensing
    times the AOI's catalogue is known to be complete for. When part of
    ``[floor, start]`` is not covered (runs failed or did not happen for longer than the
    look-back, or the campaign was never harvested from its start), the window starts at
    the earliest uncovered time instead, minus ``lookback_days`` (products sensed just
    before it and published after the harvest that ended there, which the missed runs'
    look-back would have caught). With ``ordering.enabled``, it also reaches back to the
    sensing time of S1 products ordered within ``ordering.pickup_days`` and not harvested
    yet: their CARD products carry the source's sensing time, often older than the
    look-back when they are published. ``floor`` is the AOI's ``start_date`` or, if
    ``harvest.max_widen_days`` is set, that many days before ``end`` if later.

    Parameters
    ----------
    url : str
        Database URL.
    cfg : AoiConfig
        The AOI (``harvest.widen``, ``harvest.max_widen_days``, ``lookback_days``, ``start_date``).
    card : str
        ``s2``, ``bs`` or ``c6``.
    start, end : datetime
        The run's own window (naive UTC).

    Returns
    -------
    (start, end, reason)
        The window to harvest; ``reason`` is ``None`` when it was not changed, else one
        line to log (and to pass to :func:`harvest` as ``note`` with ``widened_from=start``).
    """
    if not cfg.harvest.widen:
        return start, end, None
    floor = dt.datetime.combine(cfg.start_date, dt.time())
    since = f"the campaign from its start {floor:%Y-%m-%d}"
    if cfg.harvest.max_widen_days is not None and end - dt.timedelta(days=cfg.harvest.max_widen_days) > floor:
        floor = end - dt.timedelta(days=cfg.harvest.max_widen_days)
        since = (f"{floor:%Y-%m-%d %H:%M}..{start:%Y-%m-%d %H:%M} "
                 f"(harvest.max_widen_days {cfg.harvest.max_widen_days:g})")
    if start <= floor:
        return start, end, None
    # the earliest time of [floor, start] that no successful harvest covered
    hole: dt.datetime | None = floor
    for a, b in covered_intervals(url, cfg, card, start):
        if hole is None:
            break
        if a > hole + EDGE_MARGIN:
            break                      # hole starts before this interval
        if b > hole:
            hole = b if b < start else None
    new_start, what = start, ""
    if hole is not None and hole < start - EDGE_MARGIN:
        lookback = dt.timedelta(days=cfg.lookback_days)
        new_start = max(hole - lookback, floor) if hole > floor else floor
        what = (f"no successful {card} harvest covers {hole:%Y-%m-%d %H:%M}..{start:%Y-%m-%d %H:%M}"
                if hole > floor else f"no successful {card} harvest covers {since}")
    if card in cfg.ordering.cards and cfg.ordering.enabled:
        with transaction(url) as conn:
            ordered = one(conn.execute(q("order_items_outstanding", schema=cfg.schema), {
                "card": card, "days": dt.timedelta(days=cfg.ordering.pickup_days)}))[0]
        if ordered is not None and ordered - EDGE_MARGIN < new_start:
            new_start = max(ordered - EDGE_MARGIN, floor)
            what = ((what + "; ") if what else "") + (
                f"{card} products ordered from the DIAS, sensed from {ordered:%Y-%m-%d %H:%M}, are not harvested yet")
    if new_start >= start:
        return start, end, None
    reason = (f"{card} harvest window widened from {start:%Y-%m-%d %H:%M} to {new_start:%Y-%m-%d %H:%M} "
              f"({(start - new_start).total_seconds() / 86400:.1f} days more): {what}")
    log.warning("%s", reason)
    return new_start, end, reason


def harvest_history(url: str, cfg: AoiConfig, limit: int = 20) -> list[dict[str, Any]]:
    """The latest ``harvest_log`` rows of the AOI (newest first), as dicts."""
    with transaction(url) as conn:
        return dicts(conn.execute(q("harvest_log_recent", schema=cfg.schema), {"limit": limit}))
