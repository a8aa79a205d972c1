"""Database maintenance of an AOI schema (the seed's "Maintenance" section, automated).

* Opt-in deletion of ``sigs`` rows of fully cloud-covered parcel-dates: parcels whose SCL
  histogram of that scene holds class 9 (cloud high probability) only. The histogram
  itself is kept, so the cloud information is not lost.
* ``VACUUM ANALYZE`` and ``CLUSTER`` of sigs and hists on pid (the typical access is one
  parcel's time series). Both refuse to run inside a transaction, so they use an
  autocommit connection. CLUSTER rewrites the table under an exclusive lock and needs
  free disk space for a copy; it is skipped while scenes are being extracted. Without the
  permanent pid indexes (``pid_indexes`` off) one is built for the CLUSTER and dropped.
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

from .config import AoiConfig
from .db import _libpq_url, connect, q, transaction

log = logging.getLogger(__name__)


def delete_cloudy_sigs(url: str, cfg: AoiConfig) -> int:
    """Delete sigs rows of parcel-dates whose SCL histogram is class 9 only.

    Returns
    -------
    int
        Rows deleted.
    """
    with transaction(url) as conn:
        n = conn.execute(q("sigs_delete_cloudy", schema=cfg.schema)).rowcount
    log.info("deleted %d sigs rows of fully cloud-covered (SCL 9 only) parcel-dates", n)
    return n


def _sizes(url: str, schema: str) -> dict[str, int]:
    with transaction(url) as conn:
        return dict(conn.execute(q("table_sizes", schema=schema), {"schema": schema}).fetchall())


def vacuum_cluster(url: str, cfg: AoiConfig, *, cluster: bool = True) -> dict[str, Any]:
    """VACUUM ANALYZE every table of the schema; CLUSTER sigs and hists on pid.

    Returns
    -------
    dict
        Seconds per step and, per table, whether CLUSTER ran: it is skipped while stages
        are in progress (it would block their writes for its whole duration) and when
        the table stays locked for 10 s.
    """
    out: dict[str, Any] = {}
    with connect(url, autocommit=True) as conn:
        conn.execute(q("maintenance_lock_timeout"))
        for table in ("dias_catalogue", "scene_stages", "hists", "sigs"):
            t0 = time.perf_counter()
            conn.execute(q("vacuum_table", schema=cfg.schema, table=table))
            out[f"vacuum_{table}_s"] = round(time.perf_counter() - t0, 2)
        if not cluster:
            out["cluster"] = "off"
        for table, index in (("hists", "hists_pidx"), ("sigs", "sigs_pidx")) if cluster else ():
            # checked right before each CLUSTER: it holds an exclusive lock for its whole run
            busy = conn.execute(q("stages_in_progress", schema=cfg.schema)).fetchone()[0]
            if busy:
                log.warning("CLUSTER of %s skipped: %d scene stages are in progress", table, busy)
                out[f"cluster_{table}"] = f"skipped ({busy} stages in progress)"
                continue
            t0 = time.perf_counter()
            ids = {"schema": cfg.schema, "table": table, "index": index}
            try:
                # Without the permanent pid index (pid_indexes off, faster writes) one is
                # built for the CLUSTER and dropped again.
                conn.execute(q("pid_index_create", **ids))
                conn.execute(q("cluster_table", **ids))
                if not cfg.pid_indexes:
                    conn.execute(q("index_drop", **ids))
                conn.execute(q("analyze_table", **ids))
            except psycopg.errors.LockNotAvailable:
                log.warning("CLUSTER of %s skipped: the table stayed locked for 10 s", table)
                out[f"cluster_{table}"] = "skipped (table locked)"
                continue
            out[f"cluster_{table}_s"] = round(time.perf_counter() - t0, 2)
            out[f"cluster_{table}"] = "done"
    log.info("maintenance %s: %s", cfg.schema, out)
    return out


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
    params = conninfo_to_dict(_libpq_url(url))
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
        report["backup"] = str(backup(url, cfg, cfg.resolve(target)))
    report["sizes_after"] = _sizes(url, cfg.schema)
    return report
