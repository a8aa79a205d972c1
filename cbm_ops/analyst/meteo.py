"""Daily weather per parcel: the optional ``meteo`` table, its import and the JRC's ``weatherTimeSeries``.

The JRC server joins each parcel's centroid to an ERA5 grid (``era5_grid``/``era5_data``,
ec-jrc/cbm ``api/scripts/db_queries.py``, ``getParcelWeather``) and answers
``{"meteo_date": ["YYYY-MM-DD", ...], "tmin": [...], "tmax": [...], "tmean": [...], "prec":
[...]}``. Here an AOI may have a ``meteo`` table (``include/sql/meteo_table.sql``) with one
row per day and either a parcel (``pid``) or a grid cell (an EPSG:4326 polygon that holds
parcel centroids), filled from a CSV by ``cbm import-meteo`` (:func:`import_meteo`). Without
the table the answer has the same five columns, empty.

Units (the JRC's, whose answers do not state them; the natural reading of ERA5/AgERA5
daily data): ``tmin``, ``tmax``, ``tmean`` air temperature at 2 m in degrees Celsius,
``prec`` precipitation in mm per day.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import AoiConfig
from ..db import q, transaction
from ..errors import MeteoImportError
from .queries import as_columns, parcel_bbox, year_window

METEO_COLUMNS = ("meteo_date", "tmin", "tmax", "tmean", "prec")
VALUES = ("tmin", "tmax", "tmean", "prec")
RANGES = {"tmin": (-90.0, 60.0), "tmax": (-90.0, 60.0), "tmean": (-90.0, 60.0), "prec": (0.0, 2000.0)}


def weather_time_series(conn, cfg: AoiConfig, pid: int, year: int | None = None) -> dict[str, list]:
    """The daily weather of parcel ``pid`` (the JRC's ``weatherTimeSeries``).

    Parameters
    ----------
    year : int, optional
        Calendar year of the days; default all.

    Returns
    -------
    dict of str to list
        ``meteo_date`` (``YYYY-MM-DD``), ``tmin``, ``tmax``, ``tmean`` (degrees C) and
        ``prec`` (mm/day), by date: the parcel's own rows, else those of the grid cell
        holding its centroid; empty lists without a ``meteo`` table or rows.

    Raises
    ------
    NotFound
        Unknown pid.
    BadRequest
        Invalid year.
    """
    start, end = year_window(year)
    parcel_bbox(conn, cfg, pid)                  # NotFound for an unknown pid
    if not conn.execute(q("table_exists"), {"name": f'"{cfg.schema}".meteo'}).fetchone()[0]:
        return {c: [] for c in METEO_COLUMNS}
    cur = conn.execute(q("meteo_series", schema=cfg.schema, parcels=cfg.parcels.table),
                       {"pid": pid, "start": start, "end": end})
    return as_columns(METEO_COLUMNS, (dict(zip(METEO_COLUMNS, r, strict=True)) for r in cur))


def _value(row: dict[str, str], name: str, line: int) -> float | None:
    text = (row.get(name) or "").strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise MeteoImportError(f"line {line}: {name} {text[:30]!r} is not a number") from None
    lo, hi = RANGES[name]
    if not (math.isfinite(v) and lo <= v <= hi):
        raise MeteoImportError(f"line {line}: {name} {v} is outside {lo:g}..{hi:g} "
                               f"({'mm/day' if name == 'prec' else 'degrees Celsius'})")
    return v


def _key(row: dict[str, str], keyname: str, line: int) -> tuple[int | None, str | None]:
    """(pid, None) or (None, cell WKT) of one CSV row."""
    text = (row.get(keyname) or "").strip()
    if keyname == "pid":
        try:
            return int(text), None
        except ValueError:
            raise MeteoImportError(f"line {line}: pid {text[:30]!r} is not a parcel id") from None
    import shapely

    try:
        g = shapely.from_wkt(text)
    except shapely.errors.GEOSException:
        g = None
    if g is None or g.geom_type != "Polygon" or not g.is_valid or g.is_empty:
        raise MeteoImportError(f"line {line}: cell is not a valid WKT Polygon")
    x0, y0, x1, y1 = g.bounds
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise MeteoImportError(f"line {line}: cell coordinates must be lon/lat degrees (EPSG:4326)")
    return None, text


def _header(fields: Sequence[str] | None, path: Path) -> tuple[str, str]:
    """(date column, key column) of the CSV header, checked."""
    names = {(f or "").strip().lower() for f in fields or []}
    date = "meteo_date" if "meteo_date" in names else "date"
    missing = [c for c in (date, *VALUES) if c not in names]
    keys = [k for k in ("pid", "cell") if k in names]
    if missing or len(keys) != 1:
        raise MeteoImportError(f"{path.name}: the header needs date, tmin, tmax, tmean, prec and one of pid or cell "
                               f"(WKT polygon, EPSG:4326); missing {', '.join(missing) or 'a pid or cell column'}")
    return date, keys[0]


def read_meteo_csv(path: str | Path) -> list[tuple[Any, ...]]:
    """The rows of a weather CSV, checked: ``(pid, cell, date, tmin, tmax, tmean, prec)``.

    Parameters
    ----------
    path : str or Path
        CSV with a header: ``date`` (or ``meteo_date``, ``YYYY-MM-DD``), ``tmin``, ``tmax``,
        ``tmean`` (degrees C), ``prec`` (mm/day; empty = missing) and either ``pid`` (a
        parcel) or ``cell`` (a WKT polygon in EPSG:4326, e.g. an ERA5 grid cell).

    Raises
    ------
    MeteoImportError
        The first bad line: a date, number, range (temperature -90..60 degrees C, prec
        0..2000 mm), tmin above tmax, a key, or a day given twice for the same parcel or cell.
    """
    path = Path(path)
    out, seen = [], set()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        date_col, key_col = _header(reader.fieldnames, path)
        for row in reader:
            row = {(k or "").strip().lower(): v for k, v in row.items()}
            line = reader.line_num
            try:
                day = dt.date.fromisoformat((row.get(date_col) or "").strip())
            except ValueError:
                raise MeteoImportError(f"line {line}: {date_col} {row.get(date_col)!r} is not YYYY-MM-DD") from None
            pid, cell = _key(row, key_col, line)
            vals = [_value(row, n, line) for n in VALUES]
            if vals[0] is not None and vals[1] is not None and vals[0] > vals[1] + 0.05:
                raise MeteoImportError(f"line {line}: tmin {vals[0]} is above tmax {vals[1]}")
            if (pid, cell, day) in seen:
                raise MeteoImportError(f"line {line}: {day} is given twice for the same {key_col}")
            seen.add((pid, cell, day))
            out.append((pid, cell, day, *vals))
    if not out:
        raise MeteoImportError(f"{path.name}: no rows")
    return out


def import_meteo(url: str, cfg: AoiConfig, path: str | Path) -> dict[str, Any]:
    """Import a weather CSV (:func:`read_meteo_csv`) into the AOI's ``meteo`` table.

    All or nothing, in one transaction; the days of the file replace the stored days of
    the same parcels or cells, so importing a file again changes nothing.

    Returns
    -------
    dict
        ``rows``, ``replaced`` (stored rows replaced), ``parcels``, ``cells``, ``first``,
        ``last`` (dates).

    Raises
    ------
    MeteoImportError
        A bad line, or pids that are not parcels of the AOI (the first ten named).
    """
    rows = read_meteo_csv(path)
    with transaction(url) as conn:
        conn.execute(q("meteo_table", schema=cfg.schema))
        conn.execute(q("meteo_stage"))
        with conn.cursor().copy(q("meteo_stage_copy")) as cp:
            for r in rows:
                cp.write_row(r)
        unknown = [r[0] for r in conn.execute(q("meteo_unknown_pids", schema=cfg.schema, parcels=cfg.parcels.table))]
        if unknown:
            raise MeteoImportError(f"pids that are not parcels of AOI {cfg.name}: {', '.join(map(str, unknown))}")
        replaced = conn.execute(q("meteo_delete", schema=cfg.schema)).rowcount
        conn.execute(q("meteo_insert", schema=cfg.schema))
    days = sorted(r[2] for r in rows)
    return {"rows": len(rows), "replaced": replaced, "parcels": len({r[0] for r in rows if r[0] is not None}),
            "cells": len({r[1] for r in rows if r[1] is not None}), "first": days[0].isoformat(),
            "last": days[-1].isoformat()}
