"""The harvest: CARD scenes over an AOI into ``dias_catalogue``, logged, and widened after outages.

Every record is upserted on ``reference``: a re-harvest is a no-op, a republished baseline
is a new row (the older one, if not yet processed, becomes ``Superseded``). New scenes get
their pending stage rows (:func:`cbm_ops.queue.enqueue`). Each harvest of a card is
recorded in ``harvest_log`` (window, times, ok/failed, counts); :func:`widened_window`
uses it to extend a scheduled run's window back over an outage.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from typing import Any

import shapely

from ..config import AoiConfig
from ..db import dicts, one, q, transaction
from ..errors import ConfigError
from ..queue import enqueue
from .odata import ODataSource
from .records import REPORT_LINES, HarvestReport, SceneRecord, SkippedRecord
from .sources import EDGE_MARGIN, OfflineSource, RestoSource
from .stac import StacSource

log = logging.getLogger(__name__)


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

    A known reference is refreshed (footprint, cloud cover, product path, band hrefs) when
    the same source modified it since (``modified``: OData ModificationDate, STAC
    ``updated``), counted in ``report.refreshed``; its status and stages stay.

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
        elif row[1]:
            report.inserted += 1
            ids.append(row[0])
        else:
            report.refreshed += 1
            report.existing += 1
    return ids



def harvest(url: str, cfg: AoiConfig, start: dt.datetime, end: dt.datetime,
            cards: Iterable[str] | None = None, source: Any = None,
            widened_from: dt.datetime | None = None, note: str | None = None) -> HarvestReport:
    """Harvest the AOI's CARD scenes of ``[start, end]`` into ``dias_catalogue``.

    Each card's harvest is recorded in ``harvest_log`` (``running``, then ``ok`` with its
    counts or ``failed`` with the error). After the harvest, order items whose CARD
    product is now catalogued are marked ``harvested`` (:func:`reconcile_orders`).

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
    with transaction(url) as conn:
        report.superseded = conn.execute(q("catalogue_supersede", schema=cfg.schema)).rowcount
        report.enqueued = enqueue(conn, cfg)
        reconcile_orders(conn, cfg)
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


def reconcile_orders(conn, cfg: AoiConfig) -> int:
    """Mark order items ``harvested`` whose CARD product is now in ``dias_catalogue``
    (identity match, :func:`cbm_ops.harvest.ordering.s1_identity`); returns how many.
    Run by every harvest and by the ordering's poll."""
    return conn.execute(q("order_reconcile", schema=cfg.schema)).rowcount


def make_source(cfg: AoiConfig) -> Any:
    """The catalogue source configured for an AOI (``catalogue.source``).

    Raises
    ------
    HarvestError
        If the offline directory does not exist.
    """
    tol = dt.timedelta(hours=cfg.harvest.date_tolerance_hours)
    if cfg.catalogue.source == "offline":
        path = cfg.resolve(cfg.catalogue.path)
        if path is None:
            raise ConfigError(f"AOI {cfg.name}: catalogue.source offline needs catalogue.path")
        return OfflineSource(path, date_tolerance=tol)
    if cfg.catalogue.source == "odata":
        return ODataSource(cfg.catalogue, date_tolerance=tol)
    if cfg.catalogue.source == "stac":
        return StacSource(cfg.catalogue, date_tolerance=tol)
    return RestoSource(cfg.catalogue, date_tolerance=tol)
