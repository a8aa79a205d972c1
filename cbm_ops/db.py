"""PostGIS access: connections, the SQL files of ``include/sql`` and schema setup.

Every SQL statement lives in ``include/sql/<name>.sql``. Identifiers (schema, parcel
table) are written there as ``{schema}``/``{parcels}`` and composed with
:class:`psycopg.sql.Identifier`; values are always bound parameters (``%(name)s``).

Credentials never appear in code or configuration files: the database URL comes from the
caller (an Airflow Connection through :mod:`plugins.cbm_plugin`) or from the environment
(:func:`db_url_from_env`).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


def _project_dir() -> Path:
    """The project directory (``include/aois``, ``include/sample``, relative AOI paths).

    ``CBM_PROJECT_DIR``; else the source checkout this package lives in (``pip install -e``
    or ``PYTHONPATH``); else the current directory (a wheel installed in site-packages).
    """
    if os.environ.get("CBM_PROJECT_DIR"):
        return Path(os.environ["CBM_PROJECT_DIR"]).resolve()
    src = Path(__file__).resolve().parent.parent
    if (src / "include" / "sql").is_dir():
        return src
    return Path.cwd()


def _sql_dir() -> Path:
    if os.environ.get("CBM_SQL_DIR"):
        return Path(os.environ["CBM_SQL_DIR"])
    src = Path(__file__).resolve().parent.parent / "include" / "sql"
    if src.is_dir():
        return src
    from importlib.resources import files

    return Path(str(files("cbm_ops.sql")))     # the copy a wheel ships (pyproject.toml)


PROJECT_DIR = _project_dir()
SQL_DIR = _sql_dir()


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
    return sql.SQL(_sql_text(name)).format(**{k: sql.Identifier(v) for k, v in identifiers.items()})


def q_ddl(name: str, literals: dict[str, object], **identifiers: str) -> sql.Composed:
    """Like :func:`q` for DDL statements, which take no bound parameters (partition bounds,
    a column's SRID): the ``literals`` are composed with :class:`psycopg.sql.Literal`, i.e.
    quoted and escaped by psycopg, never pasted as text."""
    parts: dict[str, sql.Composable] = {k: sql.Identifier(v) for k, v in identifiers.items()}
    parts.update({k: sql.Literal(v) for k, v in literals.items()})
    return sql.SQL(_sql_text(name)).format(**parts)


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


# Server-side TCP keepalive of our sessions: a worker host that vanishes (power, network)
# is noticed by PostgreSQL within about a minute, which releases its session locks (the
# scene queue's liveness locks, see cbm_ops.queue).
SESSION_SETTINGS = {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}


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
                           application_name=application_name, options=_options())


def _options() -> str:
    return " ".join(f"-c {k}={v}" for k, v in SESSION_SETTINGS.items())


_POOLS: dict[tuple[int, str], object] = {}
_POOLS_LOCK = threading.Lock()
POOL_MAX_SIZE = int(os.environ.get("CBM_DB_POOL_MAX", "8"))
POOL_TIMEOUT_S = float(os.environ.get("CBM_DB_POOL_TIMEOUT", "30"))


def pool(url: str):
    """The connection pool of this process for ``url`` (``psycopg_pool.ConnectionPool``).

    One pool per process and database: a forked child (Airflow task runner, Celery
    prefork) gets its own pool instead of sharing its parent's sockets. Connections are
    checked before they are handed out, so a database restart costs one reconnect,
    not a failed task. ``CBM_DB_POOL_MAX`` caps its size (default 8); a connection
    is waited for ``CBM_DB_POOL_TIMEOUT`` seconds (default 30).
    """
    from psycopg_pool import ConnectionPool

    key = (os.getpid(), url)
    p = _POOLS.get(key)
    if p is None:
        with _POOLS_LOCK:
            p = _POOLS.get(key)
            if p is None:
                p = ConnectionPool(
                    _libpq_url(url), min_size=0, max_size=POOL_MAX_SIZE, open=True, timeout=POOL_TIMEOUT_S,
                    max_idle=300.0, check=ConnectionPool.check_connection, reset=_reset, name="cbm",
                    kwargs={"application_name": "cbm-airflow", "options": _options()})
                _POOLS[key] = p
    return p


def _reset(conn: psycopg.Connection) -> None:
    conn.execute(q("session_reset"))
    conn.rollback()


@atexit.register
def _close_pools() -> None:
    for key, p in list(_POOLS.items()):
        if key[0] == os.getpid():
            try:
                p.close(timeout=2.0)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - exiting anyway
                pass
    _POOLS.clear()


def close_pools() -> None:
    """Close this process's pools (tests that restart the server, long-lived callers)."""
    _close_pools()


# SQLSTATEs of a server that went away: connection exceptions (class 08), administrator or
# crash shutdown, server still starting (PostgreSQL Appendix A, "Error Codes").
_CONNECTION_LOST_STATES = ("57P01", "57P02", "57P03")


def is_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the database connection was lost or could not be had.

    True for a pool timeout, an interface error (closed connection), and an operational
    error without SQLSTATE (the socket died: "server closed the connection unexpectedly",
    "connection failed") or with a connection-exception or shutdown SQLSTATE (class 08,
    57P01-57P03). False for errors of a statement on a healthy connection, which retrying
    the same work does not cure: ``QueryCanceled`` (statement_timeout), deadlocks, disk
    full, limits exceeded, lock timeouts.
    """
    from psycopg_pool import PoolTimeout

    if isinstance(exc, (PoolTimeout, psycopg.InterfaceError)):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _CONNECTION_LOST_STATES


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    """A pooled connection whose work commits on success and rolls back on any exception.

    Raises
    ------
    psycopg_pool.PoolTimeout
        If no connection could be had within ``CBM_DB_POOL_TIMEOUT`` (the server is
        unreachable); a subclass of ``psycopg.OperationalError``.
    """
    with pool(url).connection() as conn:  # commit on clean exit, rollback on error
        yield conn


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
    cbm_ops.partitions.LegacySchemaError
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
        from .partitions import LegacySchemaError

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
