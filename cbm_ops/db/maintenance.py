"""Database maintenance of an AOI schema (the seed's "Maintenance" section, automated).

* Opt-in deletion of ``sigs`` rows of fully cloud-covered parcel-dates: parcels whose SCL
  histogram of that scene holds class 9 (cloud high probability) only. The histogram
  itself is kept, so the cloud information is not lost.
* ``VACUUM ANALYZE`` of every table and ``CLUSTER`` on pid of the cold partitions of sigs
  and hists (the typical access is one parcel's time series), partition by partition
  (:mod:`cbm_ops.db.partitions`), so extraction of new scenes is never blocked. Both refuse
  to run inside a transaction, so they use an autocommit connection. CLUSTER rewrites a
  partition under an exclusive lock and needs free disk space for a copy of it. Without
  the permanent pid indexes (``pid_indexes`` off) one is built for the CLUSTER and dropped.
* ``pg_dump`` (custom format) of the AOI schema: catalogue, parcels and results. The
  password goes to pg_dump through ``PGPASSWORD``, never on its command line or in logs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ..config import AoiConfig
from .connection import connect, libpq_url, transaction
from .partitions import Partition, list_partitions
from .sql import q

log = logging.getLogger(__name__)


def delete_cloudy_sigs(url: str, cfg: AoiConfig) -> int:
    """Delete sigs rows of parcel-dates whose SCL histogram is class 9 only.

    One partition pair per transaction; scenes with a stage in progress are left alone
    (their writer replaces their rows).

    Returns
    -------
    int
        Rows deleted.
    """
    n = 0
    with transaction(url) as conn:
        parts = list_partitions(conn, cfg.schema)
    for p in parts:
        with transaction(url) as conn:
            n += conn.execute(q("sigs_delete_cloudy", schema=cfg.schema, sigs_part=p.sigs,
                                hists_part=p.hists)).rowcount
    log.info("deleted %d sigs rows of fully cloud-covered (SCL 9 only) parcel-dates", n)
    return n


def _sizes(url: str, schema: str) -> dict[str, int]:
    with transaction(url) as conn:
        return dict(conn.execute(q("table_sizes", schema=schema), {"schema": schema}).fetchall())


def vacuum_cluster(url: str, cfg: AoiConfig, *, cluster: bool = True) -> dict[str, Any]:
    """VACUUM ANALYZE every table, partition by partition; CLUSTER cold partitions on pid.

    * VACUUM (SHARE UPDATE EXCLUSIVE on one table at a time) runs beside extraction.
    * CLUSTER rewrites one partition of sigs or hists in pid order under ACCESS EXCLUSIVE
      on that partition only. It runs on *cold* partitions: every obsid of the range is
      assigned (new scenes go to newer partitions), no stage of the range is pending or
      in progress, and the partition changed since its last CLUSTER. So it never blocks
      the extraction of new scenes; a parcel time-series read waits for the partition
      being clustered. It gives up after ``maintenance.lock_timeout_s`` (10 s) if a
      writer holds the partition (a requeued old scene), and so does VACUUM of a table
      (it is skipped until the next run, listed in ``vacuum_skipped``). Without the
      permanent pid indexes (``pid_indexes`` off) an index on pid is built for the
      CLUSTER and dropped again, in the transaction of the CLUSTER.
    * ANALYZE of the partitioned parents (the planner's estimates for whole-table
      queries) comes last.

    Returns
    -------
    dict
        Seconds per step; ``partitions``: per partition (``lo``) what CLUSTER did
        (``done``, ``skipped: <reason>``, ``unchanged``); ``cluster_sigs`` /
        ``cluster_hists``: ``done`` if any partition was clustered, else the reasons.
    """
    out: dict[str, Any] = {}
    schema = cfg.schema
    with transaction(url) as conn:
        parts = list_partitions(conn, schema)
    with connect(url, autocommit=True) as conn:
        conn.execute(q("maintenance_lock_timeout"), {"timeout": f"{round(cfg.maintenance.lock_timeout_s * 1000)}ms"})
        t0 = time.perf_counter()
        skipped = []
        for table in ["dias_catalogue", "scene_stages", "aois", "result_partitions",
                      *(t for p in parts for t in (p.sigs, p.hists))]:
            try:
                conn.execute(q("vacuum_table", schema=schema, table=table))
            except psycopg.errors.LockNotAvailable:     # e.g. a CREATE INDEX holds it: next time
                log.warning("VACUUM of %s.%s skipped: the table stayed locked for %g s", schema, table,
                            cfg.maintenance.lock_timeout_s)
                skipped.append(table)
        out["vacuum_s"] = round(time.perf_counter() - t0, 2)
        if skipped:
            out["vacuum_skipped"] = skipped
        per_part: dict[int, dict[str, str]] = {}
        if not cluster:
            out["cluster"] = "off"
        for p in parts if cluster else ():
            per_part[p.lo] = _cluster_partition(conn, cfg, p)
        out["partitions"] = per_part
        for kind in ("sigs", "hists"):
            states = [v[kind] for v in per_part.values()]
            out[f"cluster_{kind}"] = ("done" if "done" in states else "; ".join(sorted(set(states))) or
                                      ("off" if not cluster else "no partitions"))
        t0 = time.perf_counter()
        try:
            for table in ("sigs", "hists"):
                conn.execute(q("analyze_table", schema=schema, table=table))
        except psycopg.errors.LockNotAvailable:
            log.warning("ANALYZE of the partitioned parents skipped: locked for 10 s")
        out["analyze_parents_s"] = round(time.perf_counter() - t0, 2)
    log.info("maintenance %s: %s", schema, out)
    return out


def _cluster_partition(conn: psycopg.Connection, cfg: AoiConfig, p: Partition) -> dict[str, str]:
    """CLUSTER one cold partition pair (autocommit connection); what was done per table."""
    schema = cfg.schema
    row = conn.execute(q("partition_activity", schema=schema),
                       {"lo": p.lo, "hi": p.hi, "sigs": f'"{schema}".{p.sigs}',
                        "hists": f'"{schema}".{p.hists}', "max_attempts": cfg.max_attempts}).fetchone()
    if row is None:           # an aggregate: always one row
        raise RuntimeError(f"{schema}: partition_activity returned no row for obsids [{p.lo}, {p.hi})")
    open_range, busy, mods, last_mods = row
    if open_range:
        why = "skipped: open (new scenes may still be written to it)"
        return {"sigs": why, "hists": why}
    if busy:
        why = f"skipped: {busy} stages pending or in progress"
        return {"sigs": why, "hists": why}
    if last_mods is not None and mods == last_mods:
        return {"sigs": "unchanged", "hists": "unchanged"}
    done: dict[str, str] = {}
    for kind, table in (("hists", p.hists), ("sigs", p.sigs)):
        t0 = time.perf_counter()
        existing = conn.execute(q("partition_pid_index"), {"table": f'"{schema}".{table}'}).fetchone()
        temporary = f"{table}_cluster_pid"
        index = existing[0] if existing else temporary
        ids = {"schema": schema, "table": table, "index": index}
        try:
            # one transaction, the table's lock first: the index built for CLUSTER (or one
            # left by an interrupted run) never outlives it, and a locked table costs nothing
            with conn.transaction():
                conn.execute(q("table_lock_exclusive", **ids))
                if not existing:
                    conn.execute(q("pid_index_create", **ids))
                conn.execute(q("cluster_table", **ids))
                if index == temporary:
                    conn.execute(q("index_drop", **ids))
            conn.execute(q("analyze_table", **ids))
        except psycopg.errors.LockNotAvailable:
            log.warning("CLUSTER of %s.%s skipped: the partition stayed locked for %g s", schema, table,
                        cfg.maintenance.lock_timeout_s)
            done[kind] = "skipped: locked"
            continue
        done[kind] = "done"
        log.info("clustered %s.%s on pid in %.1f s", schema, table, time.perf_counter() - t0)
    if done.get("sigs") == done.get("hists") == "done":
        conn.execute(q("partition_clustered", schema=schema),
                     {"lo": p.lo, "sigs": f'"{schema}".{p.sigs}', "hists": f'"{schema}".{p.hists}'})
    return done


def backup(url: str, cfg: AoiConfig, directory: str | Path) -> Path:
    """``pg_dump -Fc`` of the AOI schema into ``directory``.

    Returns
    -------
    Path
        The dump file, ``<schema>_<UTC timestamp>.dump``.

    Raises
    ------
    RuntimeError
        If pg_dump is missing or fails (its stderr is in the message, without secrets).
    """
    exe = shutil.which("pg_dump")
    if exe is None:
        raise RuntimeError("pg_dump not found: install the PostgreSQL client (postgresql-client)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{cfg.schema}_{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.dump"
    params = conninfo_to_dict(libpq_url(url))
    env = dict(os.environ)
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"),
                     ("password", "PGPASSWORD"), ("dbname", "PGDATABASE"), ("sslmode", "PGSSLMODE")):
        if params.get(key):
            env[var] = str(params[key])
    t0 = time.perf_counter()
    res = subprocess.run([exe, "--format=custom", f"--schema={cfg.schema}", f"--file={target}"],
                         env=env, capture_output=True, text=True)
    if res.returncode != 0:
        target.unlink(missing_ok=True)
        raise RuntimeError(f"pg_dump failed ({res.returncode}): {res.stderr.strip()[:500]}")
    log.info("backup of %s: %s (%.1f MB, %.1f s)", cfg.schema, target, target.stat().st_size / 1e6,
             time.perf_counter() - t0)
    return target


def run_maintenance(url: str, cfg: AoiConfig, *, delete_cloudy: bool | None = None,
                    cluster: bool | None = None, backup_dir: str | None = None) -> dict[str, Any]:
    """All maintenance steps as configured (arguments override the configuration).

    Returns
    -------
    dict
        Rows deleted, step timings, table sizes before/after (bytes), backup file.
    """
    m = cfg.maintenance
    report: dict[str, Any] = {"sizes_before": _sizes(url, cfg.schema)}
    if delete_cloudy if delete_cloudy is not None else m.delete_cloudy_sigs:
        report["cloudy_sigs_deleted"] = delete_cloudy_sigs(url, cfg)
    if m.vacuum or cluster:
        report.update(vacuum_cluster(url, cfg, cluster=m.cluster if cluster is None else cluster))
    target = backup_dir or m.backup_dir
    if target:
        report["backup"] = str(backup(url, cfg, cfg.resolve(target) or target))
    report["sizes_after"] = _sizes(url, cfg.schema)
    return report
