"""Run windows: what one pipeline run harvests and extracts (one rule for the DAG and the CLI).

A run of ``cbm_<aoi>`` is one of:

* **manual window** (Params ``start``/``end``, dates; ``end`` exclusive, default the run's
  time): harvests and extracts ``[start, end)``;
* **backfill** (``airflow backfill create``): harvests and extracts its data interval only,
  so parallel backfill runs share the work;
* **continuous** (scheduled): harvests ``[interval start - lookback_days, interval end]``
  (late products are picked up) and extracts every pending scene of the AOI, so earlier
  failures are retried; once the interval starts after the AOI's ``end_date`` (campaign
  over) it does nothing;
* **manual** (triggered without dates): harvests the look-back window before the trigger
  time and extracts every pending scene.

Every harvest window is clipped to the campaign ``[start_date, end_date]``
(:func:`campaign_clip`), also the CLI's. Pure date arithmetic: no Airflow, no database.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from .config import AoiConfig
from .errors import RunWindowError

Window = tuple[dt.datetime | None, dt.datetime | None]


@dataclass(frozen=True)
class RunWindows:
    """The windows of one run (naive UTC datetimes).

    Attributes
    ----------
    mode : str
        ``manual window``, ``backfill``, ``continuous``, ``continuous, campaign over`` or
        ``manual``.
    harvest : (datetime or None, datetime or None)
        Sensing-time window to harvest, clipped to the campaign; ``(None, None)`` when
        nothing of it is left.
    extract : (datetime or None, datetime or None), or None
        Scenes to extract: ``[start, end)``, ``(None, None)`` for every pending scene,
        None for none (campaign over).
    interval : (datetime, datetime) or None
        The data interval of a scheduled run.
    """

    mode: str
    harvest: Window
    extract: Window | None
    interval: Window | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (ISO strings) for XCom and logs."""
        def iso(w: Window | None) -> list[str | None] | None:
            return None if w is None else [t.isoformat(sep=" ") if t else None for t in w]

        return {"mode": self.mode, "harvest": iso(self.harvest), "extract": iso(self.extract),
                "interval": iso(self.interval)}


def naive_utc(t: dt.datetime | None) -> dt.datetime | None:
    """A datetime as naive UTC (the catalogue's times); naive ones are taken as UTC."""
    if t is None:
        return None
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def param_date(params: dict[str, Any], key: str) -> dt.datetime | None:
    """A date Param (``YYYY-MM-DD``, a longer ISO string is cut to its date) as naive UTC midnight.

    Raises
    ------
    RunWindowError
        If the value is not a date.
    """
    v = params.get(key)
    if not v:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(str(v)[:10]), dt.time())
    except ValueError:
        raise RunWindowError(f"Param {key}={v!r} is not a date YYYY-MM-DD") from None


def campaign_clip(cfg: AoiConfig, start: dt.datetime, end: dt.datetime) -> Window:
    """``[start, end]`` clipped to the AOI's campaign ``[start_date, end_date]``; (None, None) if empty."""
    lo = dt.datetime.combine(cfg.start_date, dt.time())
    hi = dt.datetime.combine(cfg.end_date, dt.time()) if cfg.end_date else None
    start = max(start, lo)
    end = min(end, hi) if hi else end
    return (start, end) if start < end else (None, None)


def run_windows(cfg: AoiConfig, params: dict[str, Any], *, run_type: str, data_interval: Window,
                run_after: dt.datetime | None, now: dt.datetime | None = None) -> RunWindows:
    """The harvest and extraction windows of a run.

    Parameters
    ----------
    cfg : AoiConfig
        ``lookback_days``, ``start_date``, ``end_date``.
    params : dict
        The run's Params (``start``, ``end``: dates or None).
    run_type : str
        Airflow's run type (``scheduled``, ``backfill``, ``manual``, ``asset_triggered`` ...).
    data_interval : (datetime or None, datetime or None)
        The run's data interval (any timezone, or naive UTC).
    run_after : datetime, optional
        When the run was due (a manual run's trigger time).
    now : datetime, optional
        The current time (naive UTC), default the clock's.

    Raises
    ------
    RunWindowError
        A date Param that is not a date, ``end`` without ``start``, ``end`` not after ``start``.
    """
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    lookback = dt.timedelta(days=cfg.lookback_days)
    start, end = param_date(params, "start"), param_date(params, "end")
    if end and not start:
        raise RunWindowError(f"Param end={params['end']!r} needs a start")
    run_type = run_type.lower()
    di_start, di_end = naive_utc(data_interval[0]), naive_utc(data_interval[1])
    if start:
        end = end or naive_utc(run_after) or now
        if end <= start:
            raise RunWindowError(f"Param end {end:%Y-%m-%d} is not after start {start:%Y-%m-%d} "
                                 "(end is exclusive: the window is [start, end))")
        return RunWindows("manual window", campaign_clip(cfg, start, end), (start, end))
    if "backfill" in run_type and di_start and di_end:
        return RunWindows("backfill", campaign_clip(cfg, di_start, di_end), (di_start, di_end))
    if di_start and di_end and "manual" not in run_type:
        hi = dt.datetime.combine(cfg.end_date, dt.time()) if cfg.end_date else None
        if hi is not None and di_start >= hi:
            # The campaign is over: a scheduled run (e.g. the one unpausing creates) must not
            # take the scenes that manual runs were started for.
            return RunWindows("continuous, campaign over", (None, None), None, (di_start, di_end))
        return RunWindows("continuous", campaign_clip(cfg, di_start - lookback, di_end), (None, None),
                          (di_start, di_end))
    anchor = naive_utc(run_after) or now
    return RunWindows("manual", campaign_clip(cfg, anchor - lookback, anchor), (None, None))


def make_batches(pending: list[tuple[int, str]], batch_size: int, max_batches: int) -> list[dict[str, Any]]:
    """Split pending scenes into at most ``max_batches`` batches of at least ``batch_size``.

    Parameters
    ----------
    pending : list of (obsid, reference)
        Claimable scenes, oldest first.

    Returns
    -------
    list of dict
        ``{"obsids": [...], "label": "<first reference> (+n)"}`` per batch (the label names
        the mapped task instance in the UI, at most 240 characters).
    """
    if not pending:
        return []
    size = max(batch_size, math.ceil(len(pending) / max_batches))
    out = []
    for i in range(0, len(pending), size):
        chunk = pending[i:i + size]
        first = chunk[0][1]
        label = first if len(chunk) == 1 else f"{first} (+{len(chunk) - 1})"
        out.append({"obsids": [o for o, _ in chunk], "label": label[:240]})
    return out
