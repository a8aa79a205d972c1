"""The SQL files of ``include/sql`` and small cursor helpers.

Every SQL statement lives in ``include/sql/<name>.sql``. Identifiers (schema, parcel
table) are written there as ``{schema}``/``{parcels}`` and composed with
:class:`psycopg.sql.Identifier`; values are always bound parameters (``%(name)s``);
DDL literals (partition bounds) are composed with :class:`psycopg.sql.Literal`.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from psycopg import sql

from ..errors import ConfigError


def _sql_dir() -> Path:
    if os.environ.get("CBM_SQL_DIR"):
        return Path(os.environ["CBM_SQL_DIR"])
    src = Path(__file__).resolve().parents[2] / "include" / "sql"
    if src.is_dir():
        return src
    from importlib.resources import files

    return Path(str(files("cbm_ops.sql")))     # the copy a wheel ships (pyproject.toml)


SQL_DIR = _sql_dir()


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



def one(cur) -> tuple[Any, ...]:
    """The row a statement returns (``RETURNING``, aggregates).

    Raises
    ------
    LookupError
        If it returned none.
    """
    row = cur.fetchone()
    if row is None:
        raise LookupError("the statement returned no row")
    return row


def dicts(cur) -> list[dict[str, Any]]:
    """All rows of a cursor as dicts by column name."""
    cols = [d.name for d in cur.description or ()]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
