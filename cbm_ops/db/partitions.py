"""Partitions of the result tables: ``sigs`` and ``hists`` by obsid range.

Both tables are declaratively partitioned (``PARTITION BY RANGE (obsid)``, see
``include/sql/schema.sql``). A partition pair covers ``[lo, hi)`` with ``hi - lo =
partition_obsids`` (AOI setting, default 500 scenes) and is recorded in
``result_partitions``. Why obsid and not the acquisition month: obsid is already the
first column of both keys (no extra column in hundreds of millions of rows), one scene
stage's delete + COPY touches exactly one partition, and new scenes get increasing ids,
so old partitions go cold: maintenance vacuums and clusters them once while extraction
writes the newest one.

Locking, as measured by ``tests/db/test_partitions.py``:

* a new partition is attached with ``ATTACH PARTITION`` (SHARE UPDATE EXCLUSIVE on the
  parent), which neither waits for nor blocks writes to other partitions or reads of the
  parent; ``CREATE TABLE ... PARTITION OF`` would take ACCESS EXCLUSIVE on the parent;
* writers address their leaf partition directly (``cbm_ops.extract.writer``), so a CLUSTER
  (ACCESS EXCLUSIVE) of an old partition never blocks extraction of new scenes; a parcel
  time-series read of the parent waits for it.

An unpartitioned ``sigs``/``hists`` of an earlier cbm-airflow version (or the reference)
is converted in place by :func:`migrate` (``cbm migrate-partitions``): the old table
becomes the first partition, no row is copied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from ..config import AoiConfig
from ..errors import LegacySchemaError
from .connection import transaction
from .schema import ensure_schema
from .sql import q, q_ddl

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Partition:
    """One obsid range ``[lo, hi)`` of the result tables."""

    lo: int
    hi: int
    sigs: str
    hists: str

    def __contains__(self, obsid: object) -> bool:
        return isinstance(obsid, int) and self.lo <= obsid < self.hi


def list_partitions(conn: psycopg.Connection, schema: str) -> list[Partition]:
    """Every partition pair of ``schema``, by obsid range."""
    return [Partition(lo=r[0], hi=r[1], sigs=r[2], hists=r[3])
            for r in conn.execute(q("partition_list", schema=schema))]


def partition_for(conn: psycopg.Connection, schema: str, obsid: int) -> Partition | None:
    """The partition pair holding ``obsid`` (None if it was never created)."""
    for p in list_partitions(conn, schema):
        if obsid in p:
            return p
    return None


def group_by_partition(conn: psycopg.Connection, schema: str, obsids: Iterable[int]
                       ) -> dict[Partition, list[int]]:
    """obsids per partition; obsids without a partition have no rows and are left out."""
    parts = list_partitions(conn, schema)
    out: dict[Partition, list[int]] = {}
    for o in sorted(set(obsids)):
        p = next((p for p in parts if o in p), None)
        if p is not None:
            out.setdefault(p, []).append(o)
    return out


def table_kinds(conn: psycopg.Connection, schema: str) -> tuple[str | None, str | None]:
    """relkind of sigs and hists: ``'p'`` partitioned, ``'r'`` plain (legacy), None missing."""
    row = conn.execute(q("partition_kinds"), {"sigs": f'"{schema}".sigs', "hists": f'"{schema}".hists'}
                       ).fetchone()
    if row is None:           # a SELECT of two expressions: always one row
        raise RuntimeError(f"{schema}: partition_kinds returned no row")
    return row[0], row[1]


def _names(lo: int) -> dict[str, str]:
    return {"sigs_part": f"sigs_o{lo:09d}", "hists_part": f"hists_o{lo:09d}",
            "sigs_check": f"sigs_o{lo:09d}_range", "hists_check": f"hists_o{lo:09d}_range"}


def ensure_partition(url: str, cfg: AoiConfig, obsid: int, *, wait_s: float = 300.0) -> Partition:
    """The partition pair of ``obsid``, created (and attached) if missing.

    The range is ``[k * w, (k + 1) * w)`` for ``w = cfg.partition_obsids``, narrowed so
    that it does not overlap existing partitions (a migrated legacy table, an earlier
    width). Concurrent creators serialise on an advisory lock; a parent held by a
    maintenance ANALYZE makes the attach wait at most 10 s per try.

    Raises
    ------
    psycopg.errors.LockNotAvailable
        If the parent stayed locked for ``wait_s`` seconds.
    """
    t0 = time.monotonic()
    while True:
        try:
            with transaction(url) as conn:
                p = partition_for(conn, cfg.schema, obsid)
                if p is not None:
                    return p
                conn.execute(q("partition_lock"), {"key": f"cbm-partition:{cfg.schema}"})
                conn.execute(q("partition_lock_timeout"))
                below_hi, above_lo, inside = conn.execute(q("partition_bounds", schema=cfg.schema),
                                                          {"obsid": obsid}).fetchone()  # type: ignore[misc]
                if inside is not None:   # created by someone else while we waited for the lock
                    continue
                w = cfg.partition_obsids
                lo = (obsid // w) * w
                hi = lo + w
                if below_hi is not None:
                    lo = max(lo, below_hi)
                if above_lo is not None:
                    hi = min(hi, above_lo)
                names = _names(lo)
                conn.execute(q_ddl("partition_create", {"lo": lo, "hi": hi, "sigs_name": names["sigs_part"],
                                                        "hists_name": names["hists_part"]},
                                   schema=cfg.schema, **names))
                log.info("created result partitions %s, %s for obsids [%d, %d)", names["sigs_part"],
                         names["hists_part"], lo, hi)
                return Partition(lo=lo, hi=hi, sigs=names["sigs_part"], hists=names["hists_part"])
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() - t0 > wait_s:
                raise
            log.info("result tables of %s locked (maintenance?): partition for obsid %d retried",
                     cfg.schema, obsid)
            time.sleep(2.0)


def migrate(url: str, cfg: AoiConfig) -> dict[str, object]:
    """Convert unpartitioned sigs/hists (earlier versions, the reference) to partitioned ones.

    Each old table becomes the first partition of its new parent, covering obsids
    ``[0, hi)`` with ``hi`` the next multiple of ``partition_obsids`` above the largest
    obsid of either table; no row is copied. Steps: a ``CHECK`` on the range is added
    ``NOT VALID`` and validated (one scan under SHARE UPDATE EXCLUSIVE: extraction may go
    on meanwhile), then one short transaction renames each table and its indexes,
    creates the partitioned parents and attaches the old tables (the validated CHECK
    spares ATTACH a second scan, the primary-key index is attached, not rebuilt).
    Idempotent: partitioned tables are left alone.

    Returns
    -------
    dict
        ``{"sigs": ..., "hists": ...}``: ``"partitioned already"``, or the obsid range
        attached and the estimated rows it holds.

    Raises
    ------
    LegacySchemaError
        If only one of the tables is partitioned, or an old table lacks its primary key
        (reference databases: remove duplicate rows and add the key first, README).
    """
    schema = cfg.schema
    ensure_schema(url, schema, pid_indexes=cfg.pid_indexes, check_legacy=False)
    with transaction(url) as conn:
        kinds = table_kinds(conn, schema)
    if kinds == ("p", "p"):
        return {"sigs": "partitioned already", "hists": "partitioned already"}
    if kinds != ("r", "r"):
        raise LegacySchemaError(f"{schema}: sigs is {kinds[0]!r} and hists {kinds[1]!r}; migrate-partitions "
                                "converts two plain tables ('r') to partitioned ones ('p')")
    tops = []
    with transaction(url) as conn:
        for table in ("sigs", "hists"):
            if not conn.execute(q("migrate_has_pkey"), {"table": f'"{schema}".{table}'}).fetchone()[0]:  # type: ignore[index]
                raise LegacySchemaError(
                    f"{schema}.{table} has no primary key: remove duplicate rows and add it first "
                    "(README, Adopting a reference database)")
            tops.append(conn.execute(q("migrate_max_obsid", schema=schema, table=table)).fetchone()[0])  # type: ignore[index]
    w = cfg.partition_obsids
    hi = ((max(int(t) for t in tops if t is not None) // w) + 1) * w if any(t is not None for t in tops) else w
    for table in ("sigs", "hists"):
        log.info("migrating %s.%s: validating 0 <= obsid < %d over the existing rows", schema, table, hi)
        with transaction(url) as conn:
            conn.execute(q_ddl("migrate_check_add", {"hi": hi}, schema=schema, table=table,
                               check=f"{table}_legacy_range"))
        with transaction(url) as conn:
            conn.execute(q("migrate_check_validate", schema=schema, table=table, check=f"{table}_legacy_range"))
    out: dict[str, object] = {}
    with transaction(url) as conn:
        conn.execute(q("schema_lock"), {"key": f"cbm-schema:{schema}"})
        for table in ("sigs", "hists"):
            legacy = f"{table}_legacy"
            conn.execute(q_ddl(f"migrate_{table}_swap", {"hi": hi}, schema=schema, legacy=legacy,
                               legacy_pkey=f"{legacy}_pkey", legacy_pidx=f"{legacy}_pidx",
                               check=f"{table}_legacy_range"))
            rows = conn.execute(q("migrate_count_estimate"), {"table": f'"{schema}".{legacy}'}).fetchone()[0]  # type: ignore[index]
            out[table] = {"partition": legacy, "obsids": [0, hi], "rows_estimate": max(int(rows or 0), 0)}
        conn.execute(q_ddl("migrate_register", {"hi": hi}, schema=schema))
        # the views followed the renamed tables to *_legacy: bind them to the new parents
        conn.execute(q("schema_views", schema=schema))
    ensure_schema(url, schema, pid_indexes=cfg.pid_indexes)
    log.info("migrated %s to partitioned result tables: %s", schema, out)
    return out
