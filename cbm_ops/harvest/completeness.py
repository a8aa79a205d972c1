"""Completeness: the acquisitions that should exist over the AOI vs harvested vs extracted.

Model (from the harvested history, no orbit files)
--------------------------------------------------
Each Sentinel satellite repeats its ground track exactly: Sentinel-2 every 10 days
(143 relative orbits), Sentinel-1 every 12 days (175 relative orbits) (ESA Sentinel-2 and
Sentinel-1 user guides, "revisit and coverage"). So every *track* seen over the AOI,

* Sentinel-2: (satellite, MGRS tile, relative orbit), one granule per pass,
* Sentinel-1: (satellite, relative orbit), one pass = the slices of one datatake,

is expected again every repeat cycle, at the same phase. The phase of a track is the
median residual of its acquisitions against a ``repeat_days`` grid (robust to a stray
product); products of one track closer than ``match_hours`` are one acquisition (S1 slices
of a datatake, S2 republished baselines). With two satellites a tile or orbit is thus
expected every 5 (S2) or 6 (S1) days, and tiles in the overlap of two orbits twice per
cycle, without assuming the constellation: a satellite is expected only while it is in
service. A satellite whose acquisitions over the AOI stop (start) more than
``retired_after_cycles`` cycles before (after) another satellite's of the same card is out of
service after its last (before its first) acquisition (S1B after December 2021, S2C from
2025); when *all* satellites stop, that is a gap, not a retirement.

For each expected acquisition in the window: *harvested* when a product of the track lies
within ``match_hours`` of it, *extracted* when all its products' stages are done
(``dias_catalogue.status`` extracted or No parcels), *pending* when it is younger than
``grace_days`` (not yet published) and missing otherwise. Harvested acquisitions off the
pattern are counted as *extra*. Known limits: a track never harvested is never expected (the
history must show it once); S1 observation scenarios that skip passes of a track show as
gaps; S1C/S1D products need their relative orbit from the catalogue (``naming`` derives it
for S1A/S1B only), otherwise they are counted as unmodelled.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import AoiConfig
from ..db import dicts, q, transaction
from ..errors import IncompleteError
from ..queue import DONE
from .catalogue import aoi_geometry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Track:
    card: str
    sensor: str                     # 2A, 1B ...
    tile: str | None                # S2 only
    relative_orbit: int

    def label(self) -> str:
        where = f"{self.tile} R{self.relative_orbit:03d}" if self.tile else f"orbit {self.relative_orbit}"
        return f"{self.card} S{self.sensor} {where}"


@dataclass(frozen=True)
class Gap:
    """An expected acquisition without a harvested product."""

    card: str
    sensor: str
    tile: str | None
    relative_orbit: int
    expected: dt.datetime
    status: str                     # missing | pending


@dataclass
class TrackRow:
    track: Track
    repeat_days: float
    expected: int = 0
    harvested: int = 0
    extracted: int = 0
    missing: int = 0
    pending: int = 0
    extra: int = 0
    last_seen: dt.datetime | None = None


@dataclass
class CardSummary:
    card: str
    expected: int = 0
    harvested: int = 0
    extracted: int = 0
    missing: int = 0
    pending: int = 0
    extra: int = 0
    products: int = 0               # harvested products of the window (all tracks)
    unmodelled: int = 0             # products without a relative orbit

    @property
    def missing_pct(self) -> float:
        due = self.expected - self.pending
        return round(100.0 * self.missing / due, 2) if due else 0.0


@dataclass
class CompletenessReport:
    """Expected vs harvested vs extracted acquisitions of an AOI and window."""

    aoi: str
    start: dt.datetime
    end: dt.datetime
    now: dt.datetime
    cards: dict[str, CardSummary]
    tracks: list[TrackRow] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    fail_above_pct: float | None = None
    retired: dict[str, str] = field(default_factory=dict)    # "bs S1B": "after 2021-12-23"

    @property
    def expected(self) -> int:
        return sum(c.expected for c in self.cards.values())

    @property
    def missing(self) -> int:
        return sum(c.missing for c in self.cards.values())

    @property
    def missing_pct(self) -> float:
        due = sum(c.expected - c.pending for c in self.cards.values())
        return round(100.0 * self.missing / due, 2) if due else 0.0

    @property
    def failed(self) -> bool:
        """True when a card misses more than ``fail_above_pct`` % of its due acquisitions."""
        return self.fail_above_pct is not None and any(
            c.missing_pct > self.fail_above_pct for c in self.cards.values())

    def failure_message(self) -> str:
        bad = [f"{c.card} {c.missing_pct:g} % ({c.missing} of {c.expected - c.pending})"
               for c in self.cards.values()
               if self.fail_above_pct is not None and c.missing_pct > self.fail_above_pct]
        return (f"completeness of {self.aoi} {self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}: "
                f"missing acquisitions above {self.fail_above_pct:g} %: {', '.join(bad)}")

    def summary(self) -> str:
        """One line: per card missing of due, pending, and the number of gaps."""
        parts = [f"{c.card} {c.missing} of {c.expected - c.pending} missing ({c.missing_pct:g} %)"
                 + (f", {c.pending} pending" if c.pending else "") for c in self.cards.values()]
        return (f"completeness {self.aoi} {self.start:%Y-%m-%d}..{self.end:%Y-%m-%d}: "
                + "; ".join(parts) + (f"; {len(self.gaps)} gaps" if self.gaps else "; no gaps"))

    def table(self, max_tracks: int = 15, max_dates: int = 10) -> str:
        """A one-screen text report: per card, then the tracks with gaps and their dates."""
        lines = [f"completeness {self.aoi} {self.start:%Y-%m-%d %H:%M}..{self.end:%Y-%m-%d %H:%M} "
                 f"(expected from the revisit pattern of the harvested history; now {self.now:%Y-%m-%d %H:%M})",
                 f"{'card':<5}{'expected':>9}{'harvested':>10}{'extracted':>10}{'missing':>8}"
                 f"{'pending':>8}{'extra':>6}{'missing %':>10}"]
        for c in self.cards.values():
            lines.append(f"{c.card:<5}{c.expected:>9}{c.harvested:>10}{c.extracted:>10}{c.missing:>8}"
                         f"{c.pending:>8}{c.extra:>6}{c.missing_pct:>10.1f}")
        for c in self.cards.values():
            if not any(t.track.card == c.card for t in self.tracks):
                lines.append(f"{c.card}: no product of this card over the AOI in the whole history: "
                             "its revisit pattern is unknown, nothing is expected")
        for k, v in self.retired.items():
            lines.append(f"out of service: {k} {v}")
        unmod = sum(c.unmodelled for c in self.cards.values())
        if unmod:
            lines.append(f"{unmod} products without a relative orbit are not modelled")
        by_track: dict[Track, list[Gap]] = defaultdict(list)
        for g in self.gaps:
            by_track[Track(g.card, g.sensor, g.tile, g.relative_orbit)].append(g)
        if by_track:
            lines.append(f"gaps ({len(self.gaps)} in {len(by_track)} tracks; * = pending, younger than grace_days):")
            for i, (t, gs) in enumerate(sorted(by_track.items(), key=lambda kv: kv[0].label())):
                if i == max_tracks:
                    lines.append(f"  ... {len(by_track) - max_tracks} more tracks")
                    break
                dates = ", ".join(f"{g.expected:%Y-%m-%d}" + ("*" if g.status == "pending" else "")
                                  for g in gs[:max_dates])
                if len(gs) > max_dates:
                    dates += f" (+{len(gs) - max_dates} more)"
                lines.append(f"  {t.label():<26} {dates}")
        else:
            lines.append("no gaps")
        if self.fail_above_pct is not None:
            lines.append(("FAILED: " + self.failure_message()) if self.failed
                         else f"ok: no card misses more than {self.fail_above_pct:g} %")
        return "\n".join(lines)

    def as_dict(self, max_gaps: int = 200) -> dict[str, Any]:
        return {
            "aoi": self.aoi, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "now": self.now.isoformat(), "missing_pct": self.missing_pct, "failed": self.failed,
            "fail_above_pct": self.fail_above_pct, "retired": self.retired,
            "cards": {k: asdict(c) | {"missing_pct": c.missing_pct} for k, c in self.cards.items()},
            "gaps": [{"card": g.card, "sensor": g.sensor, "tile": g.tile, "relative_orbit": g.relative_orbit,
                      "expected": g.expected.isoformat(timespec="minutes"), "status": g.status}
                     for g in self.gaps[:max_gaps]],
            "gaps_total": len(self.gaps),
        }


@dataclass
class _Acq:
    time: dt.datetime
    done: bool


def _acquisitions(rows: list[tuple[dt.datetime, str]], match: dt.timedelta) -> list[_Acq]:
    """Products of one track merged into acquisitions (closer than ``match``)."""
    out: list[_Acq] = []
    for t, status in sorted(rows):
        if out and t - out[-1].time <= match:
            out[-1].done = out[-1].done and status in DONE
        else:
            out.append(_Acq(t, status in DONE))
    return out


def _anchor(times: list[dt.datetime], period: dt.timedelta) -> dt.datetime:
    """The phase of a track: its first acquisition moved by the median residual."""
    t0 = times[0]
    res = []
    for t in times:
        k = round((t - t0) / period)
        res.append((t - t0 - k * period).total_seconds())
    return t0 + dt.timedelta(seconds=statistics.median(res))


def completeness(url: str, cfg: AoiConfig, start: dt.datetime, end: dt.datetime,
                 cards: Iterable[str] | None = None, now: dt.datetime | None = None,
                 fail_above_pct: float | None = None) -> CompletenessReport:
    """Expected acquisitions of the AOI in ``[start, end]`` vs harvested vs extracted.

    Parameters
    ----------
    url : str
        Database URL.
    cfg : AoiConfig
        The AOI (its ``completeness`` settings).
    start, end : datetime
        Window (naive UTC); expectations stop at ``now``.
    cards : iterable of str, optional
        Default: the AOI's cards.
    now : datetime, optional
        Naive UTC "now" (tests); default the current time.
    fail_above_pct : float, optional
        Overrides ``completeness.fail_above_pct``.

    Returns
    -------
    CompletenessReport
        ``gaps`` in track and date order; ``failed`` when a card misses more than the
        threshold.

    Raises
    ------
    LookupError
        If the AOI has no row in ``aois`` (import the parcels first).

    Notes
    -----
    The model is described in the module docstring; history outside the window (all
    products of the AOI in ``dias_catalogue``) sets each track's phase and each satellite's
    service period.
    """
    c = cfg.completeness
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    cards = [k for k in (cards or cfg.cards) if k in cfg.cards]
    match = dt.timedelta(hours=c.match_hours)
    with transaction(url) as conn:
        aoi_geometry(conn, cfg)        # LookupError if the AOI has no row yet
        rows = dicts(conn.execute(q("completeness_products", schema=cfg.schema),
                                  {"aoi": cfg.name, "cards": list(cards)}))
    report = CompletenessReport(cfg.name, start, end, now, {k: CardSummary(k) for k in cards},
                                fail_above_pct=c.fail_above_pct if fail_above_pct is None else fail_above_pct)
    by_track = _tracks(rows, report)
    service = _service_periods(cfg, by_track, match, report)
    for track in sorted(by_track, key=lambda t: t.label()):
        row = _track_row(cfg, track, by_track[track], service[(track.card, track.sensor)], report)
        report.tracks.append(row)
        cs = report.cards[track.card]
        for f in ("expected", "harvested", "extracted", "missing", "pending", "extra"):
            setattr(cs, f, getattr(cs, f) + getattr(row, f))
    log.log(logging.WARNING if report.missing else logging.INFO, "%s", report.summary())
    return report


def _period(cfg: AoiConfig, card: str) -> dt.timedelta:
    """Repeat cycle of one satellite for ``card``."""
    c = cfg.completeness
    return dt.timedelta(days=c.s2_repeat_days if card == "s2" else c.s1_repeat_days)


def _tracks(rows: list[dict[str, Any]], report: CompletenessReport
            ) -> dict[Track, list[tuple[dt.datetime, str]]]:
    """The AOI's products (whole history) by track; counts the window's products in ``report``."""
    by_track: dict[Track, list[tuple[dt.datetime, str]]] = defaultdict(list)
    for r in rows:
        in_window = report.start <= r["obstime"] <= report.end
        if in_window:
            report.cards[r["card"]].products += 1
        if r["relative_orbit"] is None:
            if in_window:
                report.cards[r["card"]].unmodelled += 1
            continue
        tile = r["tile"] if r["card"] == "s2" else None
        by_track[Track(r["card"], r["sensor"], tile, int(r["relative_orbit"]))].append((r["obstime"], r["status"]))
    return by_track


Service = tuple[dt.datetime | None, dt.datetime | None]      # (in service from, until); None: unbounded


def _service_periods(cfg: AoiConfig, by_track: dict[Track, list[tuple[dt.datetime, str]]], match: dt.timedelta,
                     report: CompletenessReport) -> dict[tuple[str, str], Service]:
    """Service period of each satellite per card, from the whole history: a satellite whose
    acquisitions stop (start) ``retired_after_cycles`` before (after) another's is out of
    service after (before) them (recorded in ``report.retired``)."""
    span: dict[tuple[str, str], list[dt.datetime]] = {}
    for t, prods in by_track.items():
        lo, hi = min(p[0] for p in prods), max(p[0] for p in prods)
        s = span.setdefault((t.card, t.sensor), [lo, hi])
        s[0], s[1] = min(s[0], lo), max(s[1], hi)
    service: dict[tuple[str, str], Service] = {}
    for (card, sensor), (lo, hi) in span.items():
        margin = _period(cfg, card) * cfg.completeness.retired_after_cycles
        others = [v for (cd, sn), v in span.items() if cd == card and sn != sensor]
        retired = any(o[1] > hi + margin for o in others)
        newcomer = any(o[0] < lo - margin for o in others)
        service[(card, sensor)] = (lo - match if newcomer else None, hi + match if retired else None)
        if retired:
            report.retired[f"{card} S{sensor}"] = f"after {hi:%Y-%m-%d}"
        if newcomer:
            report.retired[f"{card} S{sensor}"] = (report.retired.get(f"{card} S{sensor}", "")
                                                   + f" before {lo:%Y-%m-%d}").strip()
    return service


def _track_row(cfg: AoiConfig, track: Track, products: list[tuple[dt.datetime, str]],
               service: Service, report: CompletenessReport) -> TrackRow:
    """Expected acquisitions of one track in the window (within its satellite's service),
    matched with its products; gaps go to ``report.gaps``."""
    c = cfg.completeness
    period = _period(cfg, track.card)
    match, grace = dt.timedelta(hours=c.match_hours), dt.timedelta(days=c.grace_days)
    acqs = _acquisitions(products, match)
    anchor = _anchor([a.time for a in acqs], period)
    lo_s, hi_s = service
    lo = max(report.start, lo_s) if lo_s else report.start
    hi = min(report.end, report.now, hi_s) if hi_s else min(report.end, report.now)
    row = TrackRow(track, period.total_seconds() / 86400, last_seen=acqs[-1].time)
    matched: set[int] = set()
    k = int((lo - anchor) // period)
    while True:
        e = anchor + k * period
        k += 1
        if e > hi:
            break
        if e < lo:
            continue
        hit = next((i for i, a in enumerate(acqs) if abs(a.time - e) <= match), None)
        row.expected += 1
        if hit is not None:
            matched.add(hit)
            row.harvested += 1
            row.extracted += acqs[hit].done
        elif e > report.now - grace:
            row.pending += 1
            report.gaps.append(Gap(track.card, track.sensor, track.tile, track.relative_orbit, e, "pending"))
        else:
            row.missing += 1
            report.gaps.append(Gap(track.card, track.sensor, track.tile, track.relative_orbit, e, "missing"))
    row.extra = sum(1 for i, a in enumerate(acqs) if i not in matched and report.start <= a.time <= report.end)
    return row


def check(url: str, cfg: AoiConfig, start: dt.datetime, end: dt.datetime, **kw: Any) -> CompletenessReport:
    """:func:`completeness`, raising :class:`IncompleteError` when the report failed.

    Raises
    ------
    IncompleteError
        With :meth:`CompletenessReport.failure_message` (the report is logged first).
    """
    rep = completeness(url, cfg, start, end, **kw)
    if rep.failed:
        raise IncompleteError(rep.failure_message())
    return rep
