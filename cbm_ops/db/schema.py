"""Schema setup of an AOI: the DDL files of ``include/sql``, versioned by their hash."""

from __future__ import annotations

import hashlib
import logging

from ..errors import LegacySchemaError
from .connection import transaction
from .sql import SQL_DIR, _sql_text, q

log = logging.getLogger(__name__)


# DDL files applied by ensure_schema, in order; their content hash is the schema version,
# so any edit of them is applied at the next setup and an unchanged schema costs one read.
SCHEMA_FILES = ("schema", "schema_harvest", "schema_views")


def schema_version() -> str:
    """Hash of the DDL files of :data:`SCHEMA_FILES` that exist (16 hex digits)."""
    h = hashlib.sha256()
    for name in SCHEMA_FILES:
        if (SQL_DIR / f"{name}.sql").exists():
            h.update(name.encode() + b"\0" + _sql_text(name).encode() + b"\0")
    return h.hexdigest()[:16]


def ensure_schema(url: str, schema: str, *, pid_indexes: bool = False, check_legacy: bool = True) -> bool:
    """Create or upgrade the cbm-airflow tables in ``schema`` (idempotent).

    When the schema's recorded version is current (and the pid indexes are there if
    asked for) nothing is executed but one read: the DDL would take exclusive locks on
    the catalogue and block, or deadlock with, running extractions. Otherwise the DDL runs
    under an advisory lock (two setups at once) with a 30 s lock timeout.

    ``pid_indexes`` adds the reference's ``sigs_pidx``/``hists_pidx`` (see
    ``include/sql/pid_indexes.sql``); they are never dropped automatically.

    Returns
    -------
    bool
        True when DDL was applied, False when the schema was already current.

    Raises
    ------
    RuntimeError
        If the PostGIS extension is not installed in the database.
    psycopg.errors.LockNotAvailable
        If the tables stayed locked by other sessions for 30 s (retry later).
    cbm_ops.errors.LegacySchemaError
        If sigs/hists are unpartitioned tables of an earlier version (unless
        ``check_legacy`` is False, as for the migration itself).
    """
    if _schema_current(url, schema, pid_indexes):
        if check_legacy:
            _check_legacy(url, schema)
        return False
    with transaction(url) as conn:
        if conn.execute(q("postgis_installed")).fetchone() is None:
            raise RuntimeError("the PostGIS extension is not installed in this database: "
                               "ask the DBA for CREATE EXTENSION postgis")
        conn.execute(q("schema_lock"), {"key": f"cbm-schema:{schema}"})
        conn.execute(q("schema_lock_timeout"))
        for name in SCHEMA_FILES:
            if (SQL_DIR / f"{name}.sql").exists():
                conn.execute(q(name, schema=schema))
        if pid_indexes:
            conn.execute(q("pid_indexes", schema=schema))
        conn.execute(q("schema_version_set", schema=schema), {"version": schema_version()})
    log.info("schema %s created/upgraded to version %s", schema, schema_version())
    if check_legacy:
        _check_legacy(url, schema)
    return True


def _check_legacy(url: str, schema: str) -> None:
    with transaction(url) as conn:
        kinds = conn.execute(q("partition_kinds"), {"sigs": f'"{schema}".sigs', "hists": f'"{schema}".hists'}
                             ).fetchone()
    if kinds is not None and "r" in kinds:
        raise LegacySchemaError(
            f"{schema}.sigs/hists are unpartitioned tables of an earlier version: convert them with "
            f"`cbm migrate-partitions --aoi <aoi>` (no rows are copied; README, Database)")


def _schema_current(url: str, schema: str, pid_indexes: bool) -> bool:
    with transaction(url) as conn:
        row = conn.execute(q("table_exists"), {"name": f'"{schema}".cbm_schema'}).fetchone()
        exists = bool(row and row[0])
        if not exists:
            return False
        row = conn.execute(q("schema_version_get", schema=schema)).fetchone()
        version = row[0] if row else None
        if version != schema_version():
            return False
        if pid_indexes:
            row = conn.execute(q("pid_indexes_present"), {
                "sigs": f'"{schema}".sigs_pidx', "hists": f'"{schema}".hists_pidx'}).fetchone()
            return bool(row and row[0])
    return True
