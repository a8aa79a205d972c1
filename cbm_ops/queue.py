"""Scene queue: per-stage processing state in ``scene_stages`` with leases.

Life cycle of one (scene, stage) row; the statuses are the ones operators know from the
reference (``select card, status, count(*) from dias_catalogue group by 1, 2``)::

    ingested --claim--> inprogress --complete--> extracted | No parcels
                            |  \\--fail--> named error ('No file', 'Read error', ...)
                            \\--lease expires--> claimable again (attempts counted)

* :func:`enqueue` creates the pending stage rows of newly harvested scenes;
* :func:`claim` takes the oldest pending scenes atomically (``FOR UPDATE SKIP LOCKED``)
  and gives them a lease plus a session-level advisory lock (the liveness lock) on the
  worker's :class:`Session`; a scene whose holder died (lock released by PostgreSQL at
  once) or whose lease expired (holder stuck) is claimable again; a scene that reached
  ``max_attempts`` claims ends in ``Lease expired`` instead of looping.
* :func:`complete` and :func:`fail` only succeed for the lease owner, inside the caller's
  transaction, so results and state commit together (a lost lease rolls both back).
* :func:`cleanup` puts stuck and retryable-failed stages back to ``ingested`` (removing
  rows of stages that never completed) and leaves permanent errors and extracted scenes.
* ``dias_catalogue.status`` is kept as a summary of the scene's stages.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .config import STAGES, AoiConfig
from .db import connect, q, transaction
from .db.partitions import group_by_partition
from .errors import LeaseLost

log = logging.getLogger(__name__)

INGESTED = "ingested"
INPROGRESS = "inprogress"
EXTRACTED = "extracted"
NO_PARCELS = "No parcels"
LEASE_EXPIRED = "Lease expired"
QUARANTINED = "Quarantined"
DONE = (EXTRACTED, NO_PARCELS)

# Stage that must be extracted first, and stages that inherit its "No parcels".
REQUIRES = {"s2_10m": "scl", "s2_20m": "scl"}
DEPENDENTS = {"scl": ("s2_10m", "s2_20m")}


@dataclass(frozen=True)
class Claim:
    """A claimed scene stage and the catalogue fields extraction needs."""

    obsid: int
    stage: str
    attempts: int
    reference: str
    obstime: dt.datetime
    card: str
    product_identifier: str | None
    epsg: int | None
    tile: str | None
    processing_baseline: str | None
    gate_released: bool = False        # an operator accepted this stage despite the quality gate
    footprint: bytes | None = None     # catalogue footprint, EPSG:4326 WKB
    source: str | None = None          # catalogue source that harvested the scene
    assets: dict | None = None         # STAC COG items: band hrefs (cbm_ops.harvest.assets.asset_map)


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
    stages = list(cfg.stages)
    cards = [STAGES[s][0] for s in stages]
    cur = conn.execute(q("stages_enqueue", schema=cfg.schema),
                       {"aoi": cfg.name, "stages": stages, "cards": cards,
                        "start": start, "end": end})
    return cur.rowcount


STAGE_INDEX = {"scl": 0, "s2_10m": 1, "s2_20m": 2, "bs": 3, "c6": 4}   # liveness lock keys


def new_owner(label: str = "") -> str:
    """A lease owner id: ``<label>@<host>:<pid>:<random>``.

    The label (for an Airflow task instance ``dag/run/task/map_index``) says who works on
    a scene in ``scene_stages.lease_owner``; it grants nothing: a stage is taken over only
    when its holder is gone (see :func:`claim`).
    """
    return f"{label}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lock_ns(schema: str) -> str:
    """Namespace of a schema's liveness locks (hashed into the first advisory-lock key)."""
    return f"cbm:{schema}"


def _lock_params(cfg: AoiConfig, stage: str) -> dict[str, Any]:
    return {"lock_ns": lock_ns(cfg.schema), "stage_idx": STAGE_INDEX[stage]}


def claim(conn: psycopg.Connection, cfg: AoiConfig, stage: str, owner: str, *, n: int = 1,
          obsids: list[int] | None = None, start: dt.datetime | None = None,
          end: dt.datetime | None = None) -> list[Claim]:
    """Claim up to ``n`` claimable scenes of ``stage``, oldest first, with a lease.

    Claimable are pending stages and stages in progress whose holder is gone. Every
    claim takes a session-level advisory lock (the *liveness lock*, keyed on schema,
    attempt, obsid and stage) on ``conn``: while the claiming process and its connection
    live, nobody else can take the scene; when either dies, PostgreSQL releases the lock
    and the next claim anywhere takes the scene over (no waiting for the lease; the
    test asks the lock manager row by row, so a scene another worker claims while this
    statement runs is not taken, see ``include/sql/queue_claim.sql``). The
    lease still frees a scene whose holder is alive but stuck; such a holder's late write
    is refused (:class:`LeaseLost`). Call :func:`unlock` after the stage is completed,
    failed or released.

    Parameters
    ----------
    conn : psycopg.Connection
        The worker's session connection (:class:`Session`); committed by the caller right
        after (claims must be visible to others). The liveness locks belong to it.
    cfg : AoiConfig
        Supplies schema, ``max_attempts`` and ``lease_minutes``.
    stage : str
        ``scl``, ``s2_10m``, ``s2_20m``, ``bs`` or ``c6``.
    owner : str
        Lease owner id (:func:`new_owner`).
    obsids : list of int, optional
        Only these scenes (a mapped Airflow task's batch).
    start, end : datetime, optional
        Only scenes sensed in ``[start, end)``.

    Returns
    -------
    list of Claim
        Possibly empty. S2 band stages only get scenes whose SCL stage is extracted.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    requires = REQUIRES.get(stage) if REQUIRES.get(stage) in cfg.stages else None
    params: dict[str, Any] = {
        "stage": stage, "owner": owner, "n": n, "obsids": obsids, "start": start, "end": end,
        "requires": requires, "max_attempts": cfg.max_attempts, "lease_s": cfg.lease_minutes * 60.0,
        **_lock_params(cfg, stage)}
    expired = exhaust(conn, cfg, stage, obsids=obsids)
    if expired:
        log.warning("%s: scenes %s gave up after their worker was gone %d times (status %r)", stage, expired,
                    cfg.max_attempts, LEASE_EXPIRED)
        refresh_status(conn, cfg.schema, expired)
    rows = conn.execute(q("queue_claim", schema=cfg.schema), params).fetchall()
    claims = [Claim(obsid=r[0], stage=stage, attempts=r[1], reference=r[2], obstime=r[3], card=r[4],
                    product_identifier=r[5], epsg=r[6], tile=r[7], processing_baseline=r[8],
                    gate_released=bool(r[9]), footprint=bytes(r[10]) if r[10] is not None else None,
                    source=r[11], assets=r[12])
              for r in rows]
    for c in claims:
        got = conn.execute(q("queue_liveness_lock"), {**_lock_params(cfg, stage), "obsid": c.obsid,
                                                      "attempts": c.attempts}).fetchone()
        if not (got and got[0]):   # only if an earlier holder with this very attempt number lives
            log.warning("scene %s %s: liveness lock of attempt %d is held elsewhere; the lease alone "
                        "protects this claim", c.obsid, stage, c.attempts)
    if claims:
        refresh_status(conn, cfg.schema, [c.obsid for c in claims])
    return claims


# A stage at its last attempt whose liveness lock is gone gets "Lease expired" only after
# it has not been touched for this long: a worker whose connection dropped (database
# restart) reconnects and gives its scene back first (cbm_ops.extract.run_queue).
EXHAUST_GRACE_S = 120.0


def exhaust(conn: psycopg.Connection, cfg: AoiConfig, stage: str, *, obsids: list[int] | None = None
            ) -> list[int]:
    """End stages whose holder is gone after their last allowed attempt in ``Lease expired``.

    Gone: the lease expired, or the liveness lock is released and the stage was not
    touched for :data:`EXHAUST_GRACE_S` seconds. Does not refresh
    ``dias_catalogue.status`` (the caller does).

    Returns
    -------
    list of int
        The obsids that got ``Lease expired``.
    """
    return [r[0] for r in conn.execute(q("queue_exhaust", schema=cfg.schema), {
        "stage": stage, "max_attempts": cfg.max_attempts, "obsids": obsids, "grace_s": EXHAUST_GRACE_S,
        **_lock_params(cfg, stage)})]


def unlock(conn: psycopg.Connection, cfg: AoiConfig, c: Claim) -> None:
    """Release the liveness lock of a claim (after its outcome is committed).

    A no-op when ``conn`` does not hold it (e.g. it was lost with a reconnect).
    """
    conn.execute(q("queue_liveness_unlock"), {**_lock_params(cfg, c.stage), "obsid": c.obsid,
                                              "attempts": c.attempts})


def held_by_others(conn: psycopg.Connection, cfg: AoiConfig, stage: str, owner: str, *,
                   obsids: list[int] | None = None, start: dt.datetime | None = None,
                   end: dt.datetime | None = None) -> list[tuple[int, str, dt.datetime]]:
    """(obsid, lease owner, lease expiry) of the stages of a selection that another live
    worker holds: what a claimer leaves alone and should report."""
    return [tuple(r) for r in conn.execute(q("queue_held_by_others", schema=cfg.schema), {
        "stage": stage, "owner": owner, "obsids": obsids, "start": start, "end": end,
        **_lock_params(cfg, stage)})]


class Session:
    """A worker's own database session: its claims, liveness locks and writes.

    One dedicated connection (not pooled: the liveness locks must stay with it), opened
    lazily. After a connection failure, :meth:`reset` drops it; the next use reconnects.

    Parameters
    ----------
    url : str
        Database URL.
    """

    def __init__(self, url: str):
        self.url = url
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url, application_name="cbm-airflow worker")
        return self._conn

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection]:
        """The session connection in a transaction (commit on success, rollback on error)."""
        conn = self.conn
        with conn.transaction():
            yield conn

    def reset(self) -> None:
        """Forget a broken connection (its locks died with it)."""
        if self._conn is not None:
            try:
                self._conn.close()
            # already broken: closing it can only fail, its locks died with it
            except Exception:  # noqa: BLE001  # nosec B110
                pass
        self._conn = None

    def close(self) -> None:
        self.reset()


def extend_lease(conn: psycopg.Connection, cfg: AoiConfig, c: Claim, owner: str) -> None:
    """Renew the lease of a claim being processed.

    Raises
    ------
    LeaseLost
        If another worker owns the scene now.
    """
    row = conn.execute(q("queue_extend", schema=cfg.schema),
                       {"obsid": c.obsid, "stage": c.stage, "owner": owner,
                        "lease_s": cfg.lease_minutes * 60.0}).fetchone()
    if row is None:
        raise LeaseLost(f"scene {c.obsid} {c.stage}: lease lost")


def complete(conn: psycopg.Connection, cfg: AoiConfig, c: Claim, owner: str, *,
             status: str = EXTRACTED, parcels: int = 0, rows: int = 0, seconds: float = 0.0,
             lineage: dict[str, Any] | None = None, quality: dict[str, Any] | None = None) -> None:
    """Mark a claimed stage done, in the caller's transaction (with its result rows).

    ``lineage`` (:mod:`cbm_ops.extract.lineage`) and ``quality`` (:mod:`cbm_ops.extract.quality`) are
    recorded on the stage.

    ``status`` is ``extracted`` or ``No parcels``; a ``No parcels`` SCL stage also marks
    the scene's pending S2 band stages ``No parcels`` (they would find nothing either).

    Raises
    ------
    LeaseLost
        If the lease is not ``owner``'s any more: roll back, the result is not stored.
    """
    if status not in DONE:
        raise ValueError(f"complete() takes {DONE}, not {status!r}")
    row = conn.execute(q("queue_complete", schema=cfg.schema),
                       {"obsid": c.obsid, "stage": c.stage, "owner": owner, "status": status,
                        "parcels": parcels, "rows": rows, "seconds": seconds,
                        "lineage": Jsonb(lineage) if lineage is not None else None,
                        "quality": Jsonb(quality) if quality is not None else None}).fetchone()
    if row is None:
        raise LeaseLost(f"scene {c.obsid} {c.stage}: lease lost before completion")
    if status == NO_PARCELS and c.stage in DEPENDENTS:
        conn.execute(q("queue_no_parcels_dependents", schema=cfg.schema),
                     {"obsid": c.obsid, "stages": list(DEPENDENTS[c.stage])})
    refresh_status(conn, cfg.schema, [c.obsid])


def fail(conn: psycopg.Connection, cfg: AoiConfig, c: Claim, owner: str, status: str,
         error: str, *, retryable: bool) -> bool:
    """Record a failed stage under a named status (e.g. ``No file``, ``Read error``).

    A retryable failure goes back to the queue at the next :func:`cleanup` while the
    scene has attempts left; a permanent one keeps its status.

    Returns
    -------
    bool
        False if the lease had been lost (nothing recorded).
    """
    if len(status) > 24:
        raise ValueError(f"status {status!r} is longer than 24 characters")
    row = conn.execute(q("queue_fail", schema=cfg.schema),
                       {"obsid": c.obsid, "stage": c.stage, "owner": owner, "status": status,
                        "error": error[:2000], "retryable": retryable}).fetchone()
    if row is not None:
        refresh_status(conn, cfg.schema, [c.obsid])
    return row is not None


def quarantine(conn: psycopg.Connection, cfg: AoiConfig, c: Claim, owner: str, reason: str,
               quality: dict[str, Any]) -> None:
    """Store a stage that failed the quality gate as ``Quarantined`` (no rows are written).

    It stays so (not requeued by cleanup) until an operator accepts it
    (:func:`accept_quarantined`, ``cbm release``) or requeues it.

    Raises
    ------
    LeaseLost
        If the lease is not ``owner``'s any more.
    """
    row = conn.execute(q("queue_quarantine", schema=cfg.schema),
                       {"obsid": c.obsid, "stage": c.stage, "owner": owner, "error": reason[:2000],
                        "quality": Jsonb(quality)}).fetchone()
    if row is None:
        raise LeaseLost(f"scene {c.obsid} {c.stage}: lease lost before quarantine")
    refresh_status(conn, cfg.schema, [c.obsid])


def accept_quarantined(url: str, cfg: AoiConfig, obsids: list[int], stages: list[str] | None = None
                       ) -> list[tuple[int, str]]:
    """Operator release of quarantined stages: back to the queue with the gate lifted.

    The next extraction of these stages records the quality checks but writes the rows
    whatever they say.

    Returns
    -------
    list of (obsid, stage)
        The stages released (only ``Quarantined`` ones are touched).
    """
    with transaction(url) as conn:
        rows = [(int(r[0]), str(r[1])) for r in conn.execute(q("queue_accept_quarantined", schema=cfg.schema),
                                                             {"obsids": obsids, "stages": stages})]
        refresh_status(conn, cfg.schema, [r[0] for r in rows])
    return rows


def release(conn: psycopg.Connection, cfg: AoiConfig, c: Claim, owner: str) -> None:
    """Give a claimed, unprocessed scene back (shutdown): pending again, claim not counted."""
    conn.execute(q("queue_release", schema=cfg.schema),
                 {"obsid": c.obsid, "stage": c.stage, "owner": owner})
    refresh_status(conn, cfg.schema, [c.obsid])


def refresh_status(conn: psycopg.Connection, schema: str, obsids: list[int] | None) -> None:
    """Recompute ``dias_catalogue.status`` of some scenes from their stages.

    The catalogue rows are locked first (in id order, after the caller's stage rows):
    two transactions completing stages of one scene then see each other's result.

    Summary rule: a named error of any stage; else ``inprogress`` if a stage is claimed;
    ``extracted`` when every stage is; ``No parcels`` when every stage is extracted or
    ``No parcels``; otherwise ``ingested`` (stages still waiting).
    """
    if obsids is not None and not obsids:
        return
    ids = sorted(set(obsids)) if obsids is not None else None   # None: every scene
    conn.execute(q("catalogue_lock", schema=schema), {"obsids": ids})
    conn.execute(q("scene_status_refresh", schema=schema), {"obsids": ids})


def lock_claim(conn: psycopg.Connection, cfg: AoiConfig, c: Claim, owner: str) -> None:
    """Lock the caller's claimed stage row for its write transaction.

    Raises
    ------
    LeaseLost
        If the stage is not claimed by ``owner`` any more (nothing may be written).
    """
    row = conn.execute(q("queue_lock_claim", schema=cfg.schema),
                       {"obsid": c.obsid, "stage": c.stage, "owner": owner}).fetchone()
    if row is None:
        raise LeaseLost(f"scene {c.obsid} {c.stage}: lease lost before writing")


@dataclass
class CleanupReport:
    requeued: dict[str, list[int]]
    rows_deleted: int
    permanent: dict[str, int]


def cleanup(url: str, cfg: AoiConfig) -> CleanupReport:
    """Faulty-scene cleanup of an AOI (the seed's manual "faulties" SQL, made safe).

    Stages ``inprogress`` whose holder is gone (its liveness lock was released: the worker
    process, host or connection died; or its lease expired), and stages failed with a
    retryable error that have attempts left, go back to ``ingested``; rows such a stage left in
    sigs/hists are deleted unless the stage had completed before (a complete result is
    only ever replaced by a new complete result). Permanent errors keep their status;
    extracted and ``No parcels`` scenes are not touched.

    Returns
    -------
    CleanupReport
        Requeued obsids per stage, rows deleted, permanent errors per status.
    """
    requeued: dict[str, list[int]] = {}
    deleted = 0
    touched: list[int] = []
    with transaction(url) as conn:
        for stage in cfg.stages:
            kind = STAGES[stage][1]
            touched += exhaust(conn, cfg, stage)
            rows = conn.execute(q("cleanup_select", schema=cfg.schema),
                                {"stage": stage, "max_attempts": cfg.max_attempts,
                                 **_lock_params(cfg, stage)}).fetchall()
            if not rows:
                continue
            ids = [r[0] for r in rows]
            partial = [r[0] for r in rows if not r[1]]     # never completed before
            for part, ids_in in group_by_partition(conn, cfg.schema, partial).items():
                if kind == "hist":
                    deleted += conn.execute(q("hists_delete", schema=cfg.schema, part=part.hists),
                                            {"obsids": ids_in}).rowcount
                else:
                    deleted += conn.execute(q("sigs_delete", schema=cfg.schema, part=part.sigs),
                                            {"obsids": ids_in, "bands": list(cfg.stored_bands(stage))}
                                            ).rowcount
            conn.execute(q("cleanup_requeue", schema=cfg.schema), {"stage": stage, "obsids": ids})
            requeued[stage] = ids
            touched += ids
            log.info("cleanup %s: %d scenes back to the queue: %s", stage, len(ids), ids[:20])
        refresh_status(conn, cfg.schema, touched)
        permanent = dict(conn.execute(q("cleanup_permanent", schema=cfg.schema)).fetchall())
    if permanent:
        log.warning("scenes in a permanent error status (not retried): %s", permanent)
    log.info("cleanup %s: %d stages requeued, %d partial rows deleted",
             cfg.name, sum(len(v) for v in requeued.values()), deleted)
    return CleanupReport(requeued=requeued, rows_deleted=deleted, permanent=permanent)


def requeue(url: str, cfg: AoiConfig, obsids: list[int] | None, stages: list[str] | None = None) -> int:
    """Operator re-run: put scenes' stages back to ``ingested`` (any status; a stage in
    progress only if its holder is gone).

    Existing rows stay until the new extraction replaces them in one transaction.
    ``obsids`` None: every scene of the AOI (after a parcel-set replacement).

    Returns
    -------
    int
        Stage rows requeued.
    """
    with transaction(url) as conn:
        n = conn.execute(q("queue_requeue", schema=cfg.schema),
                         {"obsids": obsids, "stages": stages or list(cfg.stages),
                          "lock_ns": lock_ns(cfg.schema)}).rowcount
        refresh_status(conn, cfg.schema, obsids)
    return n


def status_counts(url: str, cfg: AoiConfig) -> list[tuple[str, str, str, int]]:
    """(card, stage, status, scenes) of the AOI, for logs, summaries and the CLI."""
    with transaction(url) as conn:
        return [tuple(r) for r in conn.execute(q("queue_counts", schema=cfg.schema))]


def pending(url: str, cfg: AoiConfig, stage: str, start: dt.datetime | None = None,
            end: dt.datetime | None = None) -> list[tuple[int, str]]:
    """(obsid, reference) of the claimable scenes of a stage, oldest first (no claim)."""
    requires = REQUIRES.get(stage) if REQUIRES.get(stage) in cfg.stages else None
    with transaction(url) as conn:
        return [tuple(r) for r in conn.execute(
            q("queue_pending", schema=cfg.schema),
            {"stage": stage, "start": start, "end": end, "requires": requires,
             "max_attempts": cfg.max_attempts, **_lock_params(cfg, stage)})]
