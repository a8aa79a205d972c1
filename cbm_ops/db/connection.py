"""Connections to the results database: URLs, single connections, per-process pools.

Credentials never appear in code or configuration files: the database URL comes from the
caller (an Airflow Connection through ``plugins/cbm_hook.py``) or from the environment
(:func:`db_url_from_env`); it is never logged.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg

from ..errors import ConfigError
from .sql import q

log = logging.getLogger(__name__)


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


def libpq_url(url: str) -> str:
    # Airflow may write postgres:// or the SQLAlchemy form postgresql+psycopg:// (PostgresHook
    # with psycopg 3), and may append its own query arguments (__extra__).
    url = re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)
    if "?" in url:
        base, query = url.split("?", 1)
        keep = [kv for kv in query.split("&") if kv and not kv.startswith("__extra__")]
        url = base + ("?" + "&".join(keep) if keep else "")
    return url


# Server-side TCP keepalive of our sessions, and a TCP user timeout (ms) for data the server
# sent that is never acknowledged (keepalives do not run then): a worker host that vanishes
# (power, network) is noticed by PostgreSQL within about a minute, which releases its session
# locks (the scene queue's liveness locks, see cbm_ops.queue) and rolls back its open
# transaction (found by the multi-host link-down test, tests_hosts).
SESSION_SETTINGS = {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3",
                    "tcp_user_timeout": "60000"}


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
    return psycopg.connect(libpq_url(url), autocommit=autocommit,
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
                    libpq_url(url), min_size=0, max_size=POOL_MAX_SIZE, open=True, timeout=POOL_TIMEOUT_S,
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
            # exiting anyway: a pool that cannot close cleanly must not mask the exit
            except Exception:  # noqa: BLE001  # nosec B110
                pass
    _POOLS.clear()




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

