"""PostGIS access: connections, the SQL files of ``include/sql`` and schema setup.

Every SQL statement lives in ``include/sql/<name>.sql``. Identifiers (schema, parcel
table) are written there as ``{schema}``/``{parcels}`` and composed with
:class:`psycopg.sql.Identifier`; values are always bound parameters (``%(name)s``).

Credentials never appear in code or configuration files: the database URL comes from the
caller (an Airflow Connection through :mod:`plugins.cbm_plugin`) or from the environment
(:func:`db_url_from_env`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent.parent
SQL_DIR = Path(os.environ.get("CBM_SQL_DIR", PROJECT_DIR / "include" / "sql"))


class ConfigError(ValueError):
    """Configuration is missing or invalid (the message says what and where)."""


@cache
def _sql_text(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"SQL file {path} not found (CBM_SQL_DIR={SQL_DIR})") from None


def q(name: str, **identifiers: str) -> sql.Composed:
    """Load ``include/sql/<name>.sql`` with its identifiers filled in.

    Parameters
    ----------
    name : str
        File name without ``.sql``.
    **identifiers : str
        Values for the ``{placeholders}`` of the file, quoted as SQL identifiers.
        A dotted value such as ``"cbm.parcels"`` is not allowed: pass schema and table
        separately.

    Returns
    -------
    psycopg.sql.Composed
        Statement(s) ready for ``cursor.execute`` with bound parameters.
    """
    return sql.SQL(_sql_text(name)).format(
        **{k: sql.Identifier(v) for k, v in identifiers.items()})


def db_url_from_env(conn_id: str = "cbm_db") -> str:
    """Database URL from the environment.

    Looks at ``CBM_DB_URL``, then at Airflow's environment connection
    ``AIRFLOW_CONN_<CONN_ID>`` (URI or JSON form), so one variable serves the CLI and
    the DAGs.

    Raises
    ------
    ConfigError
        If neither variable is set.
    """
    if os.environ.get("CBM_DB_URL"):
        return os.environ["CBM_DB_URL"]
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not raw:
        raise ConfigError(f"no database configured: set CBM_DB_URL or AIRFLOW_CONN_{conn_id.upper()} "
                          "(postgresql://user:password@host:5432/dbname)")
    if raw.lstrip().startswith("{"):
        c = json.loads(raw)
        auth = quote(c.get("login") or "", safe="")
        if c.get("password"):
            auth += ":" + quote(c["password"], safe="")
        return (f"postgresql://{auth}@{c.get('host') or 'localhost'}:{c.get('port') or 5432}"
                f"/{c.get('schema') or ''}")
    return raw


def _libpq_url(url: str) -> str:
    # Airflow may write postgres:// or the SQLAlchemy form postgresql+psycopg:// (PostgresHook
    # with psycopg 3), and may append its own query arguments (__extra__).
    url = re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)
    if "?" in url:
        base, query = url.split("?", 1)
        keep = [kv for kv in query.split("&") if kv and not kv.startswith("__extra__")]
        url = base + ("?" + "&".join(keep) if keep else "")
    return url


def connect(url: str, *, autocommit: bool = False, application_name: str = "cbm-airflow"
            ) -> psycopg.Connection:
    """Open a psycopg 3 connection.

    Parameters
    ----------
    url : str
        ``postgresql://`` URL (``postgres://`` accepted); never logged.
    autocommit : bool
        Needed for VACUUM and CLUSTER.

    Raises
    ------
    psycopg.OperationalError
        If the server cannot be reached or refuses the login.
    """
    return psycopg.connect(_libpq_url(url), autocommit=autocommit,
                           application_name=application_name)


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    """Connection whose work commits on success and rolls back on any exception."""
    with connect(url) as conn:  # psycopg commits on clean exit, rolls back on error
        yield conn


SCHEMA_VERSION = 1   # bump with every change of include/sql/schema.sql


def ensure_schema(url: str, schema: str, *, pid_indexes: bool = False) -> bool:
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
    """
    if _schema_current(url, schema, pid_indexes):
        return False
    with transaction(url) as conn:
        if conn.execute(q("postgis_installed")).fetchone() is None:
            raise RuntimeError("the PostGIS extension is not installed in this database: "
                               "ask the DBA for CREATE EXTENSION postgis")
        conn.execute(q("schema_lock"), {"key": f"cbm-schema:{schema}"})
        conn.execute(q("schema_lock_timeout"))
        conn.execute(q("schema", schema=schema))
        if pid_indexes:
            conn.execute(q("pid_indexes", schema=schema))
        conn.execute(q("schema_version_set", schema=schema), {"version": SCHEMA_VERSION})
    log.info("schema %s created/upgraded to version %d", schema, SCHEMA_VERSION)
    return True


def _schema_current(url: str, schema: str, pid_indexes: bool) -> bool:
    with transaction(url) as conn:
        exists = conn.execute(q("table_exists"), {"name": f'"{schema}".cbm_schema'}).fetchone()[0]
        if not exists:
            return False
        version = conn.execute(q("schema_version_get", schema=schema)).fetchone()[0]
        if version != SCHEMA_VERSION:
            return False
        if pid_indexes:
            return bool(conn.execute(q("pid_indexes_present"), {
                "sigs": f'"{schema}".sigs_pidx', "hists": f'"{schema}".hists_pidx'}).fetchone()[0])
    return True
