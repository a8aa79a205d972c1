"""Catalogue records: what a harvest reads, checks field by field and reports.

Parsers (:mod:`.parsers`) only take a document apart into :class:`RawRecord`; every field
of a record is converted and checked by :func:`normalise`. A record whose name, sensing
date, footprint, cloud cover, orbit or product type is unusable is *skipped*: reported as
(reference, field, value, reason) in the :class:`HarvestReport` and the log, while the rest
of its page or file is committed. A sensing date that disagrees with the date in the
product name by more than ``harvest.date_tolerance_hours`` is *flagged* and the name's
date is used.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape

from .. import naming
from ..errors import NotCardError, RecordError

log = logging.getLogger(__name__)

CARD_OF_PRODUCT_TYPE = {"CARD-BS": "bs", "CARD-COH6": "c6"}
# Relative orbits per mission family (ESA: S1 175 orbits per 12-day cycle, S2 143 per 10 days).
MAX_RELATIVE_ORBIT = {"S1": 175, "S2": 143}
# How many report lines the DAG's XCom and the final log line carry.
REPORT_LINES = 50


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
    assets: dict[str, Any] | None = None    # STAC: band hrefs and value conventions (harvest.assets)


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
    assets: dict[str, Any] | None = None    # STAC COG items: band hrefs (cbm_ops.harvest.assets)
    modified: dt.datetime | None = None     # catalogue ModificationDate / STAC updated (naive UTC)

    def row(self) -> dict[str, Any]:
        import json

        out = self.__dict__.copy()
        out["assets"] = json.dumps(self.assets) if self.assets is not None else None
        return out


@dataclass(frozen=True)
class SkippedRecord:
    """A record that was not committed, and why. ``kind``: ``bad`` (unusable field),
    ``not_card`` (a valid product we do not extract), ``filtered`` (served although outside
    the query: window, AOI or cloud cover, checked client-side), ``file`` (unreadable offline
    file), ``database`` (refused by the database)."""

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
    flags: list[FlaggedRecord] = []
    card = _card(name, props, title)
    obstime = _sensing_time(raw, name, date_tolerance, flags)
    footprint = footprint_of(raw)
    if card == "s2":
        if name.tile is None:
            raise RecordError("no MGRS tile in the Sentinel-2 product name", "title", title)
        epsg = naming.utm_epsg_for_tile(name.tile)
    else:
        c = footprint.centroid
        epsg = naming.utm_epsg_for_lonlat(c.x, c.y)
    ck, cloud_raw = _number(props, ("cloudCover", "eo:cloud_cover"))
    cloud = _float_field(ck, cloud_raw, 0.0, 100.0)
    rel, direction = _orbit(props, name, flags)
    baseline = name.processing_baseline
    if baseline is None and props.get("processingBaseline") not in (None, ""):
        baseline = str(props["processingBaseline"])[:5]
    ident = props.get("productIdentifier")
    if not isinstance(ident, str) or not ident.startswith(("/", "stac:")):
        ident = "/eodata/" + naming.store_path(name.reference, card, obstime)
    cat_id = raw.catalogue_id
    rec = SceneRecord(
        reference=name.reference, obstime=obstime, sensor=name.sensor, card=card,
        footprint_wkt=footprint.wkt, tile=name.tile, epsg=epsg, relative_orbit=rel,
        orbit_direction=direction, processing_baseline=baseline,
        cloud_cover=cloud,
        product_identifier=ident, catalogue_id=str(cat_id) if cat_id is not None else None,
        source=source, assets=raw.assets, modified=_modified(props))
    return rec, flags


def _modified(props: dict[str, Any]) -> dt.datetime | None:
    """The catalogue's modification time of the record (OData ModificationDate, STAC
    ``updated``), naive UTC; None when absent or unreadable (it only orders refreshes)."""
    for k in ("ModificationDate", "updated"):
        try:
            t = _parse_time(props.get(k))
        except (ValueError, TypeError, OverflowError):
            continue
        if t is not None:
            return t
    return None


def _card(name: naming.ProductName, props: dict[str, Any], title: str) -> str:
    """The card of a product: S2 L2A by its name, S1 CARD by its name suffix or productType.

    Raises
    ------
    NotCardError
        For products that are not extracted (S2 L1C, S1 GRD/SLC ...).
    RecordError
        For a productType that contradicts the name.
    """
    card = name.card
    ptype_raw = props.get("productType")
    ptype = str(ptype_raw or "").upper()
    if name.mission.startswith("S1"):
        by_type = CARD_OF_PRODUCT_TYPE.get(ptype)
        if card is not None and ptype.startswith("CARD") and by_type != card:
            ref = name.reference
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
    return card


def _sensing_time(raw: RawRecord, name: naming.ProductName, tolerance: dt.timedelta,
                  flags: list[FlaggedRecord]) -> dt.datetime:
    """The record's sensing start (naive UTC); the name's when they disagree (flagged)."""
    start_raw = raw.start
    try:
        start = _parse_time(start_raw)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RecordError(f"not an ISO 8601 date/time ({exc})", raw.start_field, start_raw) from None
    if start is None:
        raise RecordError("no sensing date", raw.start_field, start_raw)
    if abs(start - name.sensing_start) <= tolerance:
        return start
    flags.append(FlaggedRecord(
        name.reference, raw.start_field, _show(start_raw), name.sensing_start.isoformat(),
        f"{(start - name.sensing_start).total_seconds() / 3600:+.1f} h from the sensing start in the "
        f"product name (tolerance {tolerance.total_seconds() / 3600:g} h)"))
    return name.sensing_start


def _orbit(props: dict[str, Any], name: naming.ProductName, flags: list[FlaggedRecord]
           ) -> tuple[int | None, str | None]:
    """Relative orbit (the name's wins, flagged on disagreement) and orbit direction."""
    ref = name.reference
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
    return rel, direction


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
    filtered: int = 0              # outside the query (window, AOI, cloud cover) though served
    inserted: int = 0
    existing: int = 0
    refreshed: int = 0             # known references whose catalogue record was modified since
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
        if s.kind == "filtered":
            self.filtered += 1
            log.debug("filtered catalogue record %s", s.line())
        elif s.kind == "not_card":
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
        return sum(1 for s in self.skipped if s.kind not in ("not_card", "filtered"))

    def counts(self) -> dict[str, int]:
        return {"pages": self.pages, "read": self.read, "inserted": self.inserted,
                "existing": self.existing, "not_card": self.not_card, "filtered": self.filtered,
                "skipped": self.bad_records, "flagged": len(self.flagged)}

    def lines(self, limit: int | None = REPORT_LINES) -> list[str]:
        """Report lines: bad records, then flagged, then non-CARD products."""
        bad = [s.line() for s in self.skipped if s.kind not in ("not_card", "filtered")]
        flagged = [f.line() for f in self.flagged]
        other = [s.line() for s in self.skipped if s.kind == "not_card"]
        out = bad + flagged + other
        return out if limit is None else out[:limit]

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": self.pages, "read": self.read, "not_card": self.not_card, "filtered": self.filtered,
            "inserted": self.inserted, "existing": self.existing, "refreshed": self.refreshed,
            "superseded": self.superseded,
            "enqueued": self.enqueued, "splits": self.splits, "seconds": self.seconds,
            "bad_records": self.bad_records, "flagged_records": len(self.flagged),
            "errors": self.errors[:20],
            "skipped": [s.__dict__ for s in self.skipped if s.kind not in ("not_card", "filtered")][:REPORT_LINES],
            "flagged": [f.__dict__ for f in self.flagged][:REPORT_LINES],
            "not_card_examples": [s.line() for s in self.skipped if s.kind == "not_card"][:5],
            "log_ids": self.log_ids,
        }

