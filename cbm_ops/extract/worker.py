"""The extraction worker loop: claim scenes of a stage one at a time until none is left.

:func:`run_queue` is what ``cbm extract`` and the Airflow extract tasks call. The worker's
claims, liveness locks and writes go through one database session
(:class:`cbm_ops.queue.Session`); each claimed scene stage is processed by
:func:`.stage.process_claim` and its outcome recorded: done, a named status, or given back.
A lost database connection, and a scene store gone as a whole, are ridden out for
``db_retry_minutes``. Called with ``wait_held_s`` (the DAG's extract tasks), a batch also waits
for its scenes that another session holds, so a stage never ends without them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
from collections import Counter
from typing import Any

import psycopg

from .. import queue
from ..config import AoiConfig
from ..db import is_connection_lost
from ..errors import DatabaseUnavailable, LeaseLost, ParcelsChanged, SceneError, StoreUnavailable
from .stage import process_claim
from .store import MountStore, S3Store, make_store
from .threads import configure_threads

log = logging.getLogger(__name__)

TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError)   # candidates; see is_connection_lost
STORE_STATUSES = ("No file", "Read error")   # what a scene gets when the whole store is gone
HELD_POLL_S = 5.0   # run_queue(wait_held_s=...): seconds between looks at the scenes held elsewhere


class _Backoff:
    """Bounded retry of database (or store) outages: waits 1, 2, 4 ... 30 s, gives up after
    ``budget_s`` with ``error``."""

    def __init__(self, budget_s: float, what: str = "database", error: type[RuntimeError] = DatabaseUnavailable):
        self.what, self.error = what, error
        self.budget_s = budget_s
        self.first: float | None = None
        self.n = 0

    def ok(self) -> None:
        self.first, self.n = None, 0

    def wait(self, exc: BaseException, what: str) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if now - self.first >= self.budget_s:
            raise self.error(f"{self.what} unreachable for {now - self.first:.0f} s while {what}: "
                             f"{detail}") from None
        delay = min(2.0 ** self.n, 30.0)
        self.n += 1
        log.warning("%s while %s (%s): retrying in %.0f s",
                    "database connection failed" if self.what == "database" else f"{self.what} unavailable",
                    what, detail, delay)
        time.sleep(delay)



class _Worker:
    """The state of one :func:`run_queue` call: its session, owner id, outage backoff and the
    scene in flight when the connection was lost."""

    def __init__(self, url: str, cfg: AoiConfig, stage: str, owner: str, store: MountStore | S3Store):
        self.url, self.cfg, self.stage, self.owner, self.store = url, cfg, stage, owner, store
        self.session = queue.Session(url)
        self.backoff = _Backoff(cfg.db_retry_minutes * 60.0)
        self.store_backoff = _Backoff(cfg.db_retry_minutes * 60.0, "scene store", StoreUnavailable)
        self.in_flight: queue.Claim | None = None
        self.lost_with: Counter[int] = Counter()      # connection losses while a scene was in flight
        self.replaced = 0                             # scenes given back because the parcel set changed

    def claim(self, **selection: Any) -> queue.Claim | None:
        """The next claim (None when none is left), riding out connection losses.

        Raises
        ------
        DatabaseUnavailable
            After ``db_retry_minutes`` without a connection.
        """
        while True:
            try:
                self._give_back()
                with self.session.tx() as conn:
                    claims = queue.claim(conn, self.cfg, self.stage, self.owner, n=1, **selection)
            except TRANSIENT as exc:
                if not is_connection_lost(exc):
                    raise
                self.session.reset()
                self.backoff.wait(exc, f"claiming {self.stage} scenes")
                continue
            self.backoff.ok()
            return claims[0] if claims else None

    def _give_back(self) -> None:
        """Give back a claim of ours from before a reconnect (unless it kills the connection every time)."""
        c = self.in_flight
        if c is None:
            return
        self.lost_with[c.obsid] += 1
        if self.lost_with[c.obsid] < self.cfg.max_attempts:
            with self.session.tx() as conn:
                queue.release(conn, self.cfg, c, self.owner)
        else:
            log.warning("scene %s %s was in flight at %d connection losses: not given back, its attempts count",
                        c.reference, self.stage, self.lost_with[c.obsid])
        self.in_flight = None

    def process(self, c: queue.Claim) -> dict[str, Any] | None:
        """Process one claim and record its outcome; None when it must be claimed again."""
        try:
            try:
                return process_claim(self.url, self.cfg, c, self.owner, self.store, self.session)
            except SceneError as exc:
                if exc.status in STORE_STATUSES and not self.store.available():
                    # the whole store is gone (unmounted, unreachable), not this product: give
                    # the scene back uncounted and ride the outage out
                    with self.session.tx() as conn:
                        queue.release(conn, self.cfg, c, self.owner)
                    self.unlock(c)
                    self.store_backoff.wait(exc, f"reading {c.reference} {self.stage} (given back, will be redone)")
                    return None
                return self._failure(c, exc.status, str(exc), exc.retryable)
            except LeaseLost as exc:
                log.warning("%s", exc)
                return {"obsid": c.obsid, "reference": c.reference, "stage": self.stage, "status": "lease lost"}
            except ParcelsChanged as exc:         # nothing written: back, not counted
                log.warning("%s", exc)
                with self.session.tx() as conn:
                    queue.release(conn, self.cfg, c, self.owner)
                self.unlock(c)
                self.replaced += 1
                if self.replaced <= self.cfg.max_attempts:
                    return None
                raise
            except Exception as exc:  # noqa: BLE001 - record it on the scene, go on with the next
                if is_connection_lost(exc):
                    raise
                # a statement error on a live connection (statement_timeout, deadlock, disk
                # full) is the scene's failure: attempt counted, not retried here forever
                log.exception("scene %s %s failed", c.reference, self.stage)
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                return self._failure(c, "Failed", detail, True)
        except TRANSIENT as exc:
            if not is_connection_lost(exc):
                raise
            self.session.reset()
            self.in_flight = c
            self.backoff.wait(exc, f"processing scene {c.reference} {self.stage} (rolled back, will be redone)")
            return None

    def unlock(self, c: queue.Claim) -> None:
        """Release the claim's liveness lock (gone already with a broken connection)."""
        try:
            with self.session.tx() as conn:
                queue.unlock(conn, self.cfg, c)
        except TRANSIENT as exc:
            if not is_connection_lost(exc):
                raise
            self.session.reset()          # the lock went with the broken connection

    def _failure(self, c: queue.Claim, status: str, message: str, retryable: bool) -> dict[str, Any]:
        log.warning("scene %s %s: %s (%s): %s", c.reference, c.stage, status,
                    "retryable" if retryable else "permanent", message)
        with self.session.tx() as conn:
            queue.fail(conn, self.cfg, c, self.owner, status, message, retryable=retryable)
        return {"obsid": c.obsid, "reference": c.reference, "stage": c.stage, "status": status,
                "error": message, "rows": 0, "parcels": 0}

    def held_by_others(self, **selection: Any) -> list[tuple[int, str, dt.datetime]]:
        try:
            with self.session.tx() as conn:
                return queue.held_by_others(conn, self.cfg, self.stage, self.owner, **selection)
        except TRANSIENT as exc:
            log.warning("could not list the scenes held by other workers: %s", exc)
            return []

    def locked_by_others(self, obsids: list[int] | None, start: dt.datetime | None,
                         end: dt.datetime | None) -> list[int]:
        """Claimable scenes of a batch that the claim skipped: locked by another session's
        transaction (a claim whose worker went off the network before it committed stays
        open until PostgreSQL drops that session)."""
        if obsids is None:
            return []
        try:
            return [o for o, _ in queue.pending(self.url, self.cfg, self.stage, start, end) if o in set(obsids)]
        except TRANSIENT as exc:
            log.warning("could not list the pending scenes: %s", exc)
            return []


def run_queue(url: str, cfg: AoiConfig, stage: str, *, start: dt.datetime | None = None,
              end: dt.datetime | None = None, limit: int | None = None, obsids: list[int] | None = None,
              owner_label: str = "", store: MountStore | S3Store | None = None,
              wait_held_s: float | None = None) -> dict[str, Any]:
    """Claim and process claimable scenes of one stage until none is left.

    The worker's claims, liveness locks and writes go through one database session
    (:class:`cbm_ops.queue.Session`). A connection failure (database restart, network) is
    ridden out for ``cfg.db_retry_minutes``: the scene in flight is rolled back, given
    back and processed again after the reconnect.

    Parameters
    ----------
    url : str
        Database URL.
    cfg : AoiConfig
    stage : str
        ``scl``, ``s2_10m``, ``s2_20m``, ``bs`` or ``c6``.
    start, end : datetime, optional
        Only scenes sensed in ``[start, end)``.
    limit : int, optional
        Stop after this many scenes.
    obsids : list of int, optional
        Only these scenes (an Airflow batch); already finished ones are skipped.
    owner_label : str, optional
        Name of the caller (Airflow ``dag/run/task/map_index``) recorded as the lease
        owner's prefix.
    store : optional
        Scene store (default: from the AOI configuration and environment).
    wait_held_s : float, optional
        When scenes of the selection (``obsids``) are held by another worker at the end,
        or pending but locked by another session's open transaction, wait up to this many
        seconds for them: claim them as soon as their holder is gone (its session dropped),
        return when none is left. Default: return at once and report the held ones
        (``held_by_others``).

    Returns
    -------
    dict
        scenes, rows, parcels, seconds, scenes by status, per-scene results, and
        ``held_by_others``: scenes of the selection that another live worker holds (left
        alone, also logged).

    Raises
    ------
    DatabaseUnavailable
        If the database stayed unreachable for ``db_retry_minutes``.
    StoreUnavailable
        If the scene store stayed unavailable (``available()`` false: an empty or
        unreadable root) for ``db_retry_minutes``; until then a scene that finds no file
        while the store is gone is given back uncounted and redone.
    """
    if stage not in cfg.stages:
        log.info("%s: stage %s is not configured, nothing to do", cfg.name, stage)
        return {"stage": stage, "scenes": 0, "rows": 0, "by_status": {}, "results": [], "held_by_others": []}
    threads = configure_threads(cfg.threads_per_task)
    worker = _Worker(url, cfg, stage, queue.new_owner(owner_label), store or make_store(cfg))
    selection = {"obsids": obsids, "start": start, "end": end}
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    wait_until = time.monotonic() + (wait_held_s or 0.0)
    try:
        while True:
            while limit is None or len(results) < limit:
                c = worker.claim(**selection)
                if c is None:
                    break
                res = worker.process(c)
                if res is None:
                    continue
                worker.unlock(c)
                worker.store_backoff.ok()
                results.append(res)
            held = worker.held_by_others(**selection)
            locked = worker.locked_by_others(obsids, start, end) if wait_held_s is not None else []
            if not (held or locked) or wait_held_s is None or time.monotonic() > wait_until or \
                    (limit is not None and len(results) >= limit):
                break
            # A batch waits for its scenes that another session holds: a live holder (a retry
            # overlapping its predecessor) finishes them, and a vanished one (a host off the
            # network: PostgreSQL drops its session after the TCP keepalive or user timeout)
            # frees them for the next claim here. Returning would end the stage without them.
            log.info("%s %s: waiting for %d scenes held by other workers: %s", cfg.name, stage,
                     len(held) + len(locked), ", ".join([f"{o} ({w})" for o, w, _ in held[:20]] +
                                                        [f"{o} (locked by an open transaction)" for o in locked]))
            time.sleep(HELD_POLL_S)
    finally:
        worker.session.close()
    return _summary(cfg, stage, results, held, time.perf_counter() - t0, threads)


def _summary(cfg: AoiConfig, stage: str, results: list[dict[str, Any]], held: list[tuple[int, str, dt.datetime]],
             seconds: float, threads: int) -> dict[str, Any]:
    by_status = Counter(r["status"] for r in results)
    rows = sum(r.get("rows", 0) for r in results)
    summary = {"stage": stage, "scenes": len(results), "rows": rows,
               "parcels": sum(r.get("parcels", 0) for r in results),
               "seconds": round(seconds, 2), "by_status": dict(by_status),
               "scenes_per_min": round(len(results) / seconds * 60, 1) if results and seconds else 0.0,
               "results": results, "threads": threads,
               "held_by_others": [{"obsid": o, "owner": w, "lease_expires": str(e)} for o, w, e in held]}
    log.info("%s %s: %d scenes %s, %d rows in %.1f s", cfg.name, stage, len(results), dict(by_status),
             rows, seconds)
    if held:
        log.warning("%s %s: %d scenes left alone because another live worker holds them: %s", cfg.name, stage,
                    len(held), ", ".join(f"{o} ({w})" for o, w, _ in held[:20]))
    return summary
