"""Plots of parcel time series (PNG): NDVI with cloudy dates marked and S1 backscatter in dB."""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Sequence
from typing import Any

from ..config import AoiConfig
from ..errors import BadRequest, NotFound
from .queries import parcels_info
from .timeseries import parcel_time_series

MAX_PLOT_PARCELS = 24


def plot_parcels(panels: Sequence[dict[str, Any]], title: str = "") -> bytes:
    """PNG of parcel time series: NDVI (cloudy dates hollow) and S1 VV/VH in dB.

    Parameters
    ----------
    panels : sequence of dict
        One per parcel: ``label`` (str), ``s2`` (a :func:`parcel_time_series` result of
        tstype s2 with B04/B08 and cloudfree) and ``bs`` (tstype bs with VVb/VHb).
    title : str

    Returns
    -------
    bytes
        PNG. Left axis NDVI (-0.2 .. 1): filled green where the parcel's SCL histogram is
        cloud-free, hollow grey where cloudy, orange x without SCL histogram; right axis
        CARD-BS VV and VH backscatter 10 log10(mean gamma0) dB (-30 .. 0). matplotlib's
        object API (no pyplot state), so it is safe in a threaded server.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(len(panels), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    big = n == 1
    fig = Figure(figsize=(9.0, 4.2) if big else (4.2 * cols, 2.6 * rows + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    fs = 9 if big else 7
    for ax, p in zip(axes.flat, panels, strict=False):
        _draw_panel(ax, p, fs)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    legend: dict[str, Any] = {}
    for a in fig.axes:
        for h, lb in zip(*a.get_legend_handles_labels(), strict=True):
            legend.setdefault(lb, h)
    if title:
        fig.suptitle(title, fontsize=fs + 1)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend), fontsize=fs - 1,
                   frameon=False)
    fig.tight_layout(rect=(0, 0.06 if big else 0.04, 1, 0.95 if title else 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100 if big else 90)
    return buf.getvalue()


def _ndvi_points(s2: dict[str, list]) -> list[dict[str, Any]]:
    """One (time, NDVI, cloud-free flag) per observation of an s2 series, by time."""
    by_obs: dict[int, dict[str, Any]] = {}
    for i, obsid in enumerate(s2.get("obsid", [])):
        by_obs.setdefault(obsid, {"t": dt.datetime.fromisoformat(s2["obstime"][i]), "ndvi": s2["ndvi"][i],
                                  "clear": s2.get("cloudfree", [None] * (i + 1))[i]})
    return sorted((o for o in by_obs.values() if o["ndvi"] is not None), key=lambda o: o["t"])


def _draw_panel(ax, p: dict[str, Any], fs: int) -> None:
    """One parcel's panel: NDVI on ``ax`` and S1 VV/VH dB on a twin axis."""
    pts = _ndvi_points(p.get("s2") or {})
    styles = ((True, "o-", {"color": "tab:green", "ms": 3, "lw": 0.8}, "NDVI cloud-free (SCL)"),
              (False, "o", {"mfc": "none", "color": "0.6", "ms": 3}, "NDVI cloudy (SCL 3, 8-11)"),
              (None, "x", {"color": "tab:orange", "ms": 3}, "NDVI, no SCL histogram"))
    for value, fmt, style, label in styles:
        sel = [o for o in pts if o["clear"] is value]
        if sel:
            ax.plot([o["t"] for o in sel], [o["ndvi"] for o in sel], fmt, label=label, **style)
    ax.set_ylim(-0.2, 1.0)
    ax.set_ylabel("NDVI", fontsize=fs)
    ax.set_title(str(p.get("label", "")), fontsize=fs)
    ax.tick_params(labelsize=fs - 1)
    ax2 = ax.twinx()
    bs = p.get("bs") or {}
    for band, color in (("VVb", "tab:blue"), ("VHb", "tab:purple")):
        series = sorted((dt.datetime.fromisoformat(t), 10 * math.log10(m))
                        for t, b, m in zip(bs.get("obstime", []), bs.get("band", []), bs.get("mean", []),
                                           strict=True)
                        if b == band and m is not None and m > 0)
        if series:
            ax2.plot(*zip(*series, strict=True), "-", color=color, lw=0.6, alpha=0.8,
                     label=f"S1 {band[:2]} dB")
    ax2.set_ylim(-30, 0)
    ax2.set_ylabel("backscatter (dB)", fontsize=fs)
    ax2.tick_params(labelsize=fs - 1)
    for lab in ax.get_xticklabels():
        lab.set_rotation(30)
        lab.set_horizontalalignment("right")


def parcel_plot(conn, cfg: AoiConfig, pids: Sequence[int], year: int | None = None) -> bytes:
    """PNG of the canonical NDVI and S1 backscatter time series of up to 24 parcels.

    Raises
    ------
    BadRequest
        No pid, more than MAX_PLOT_PARCELS, invalid year.
    NotFound
        An unknown pid.
    """
    pids = list(dict.fromkeys(int(p) for p in pids))
    if not 1 <= len(pids) <= MAX_PLOT_PARCELS:
        raise BadRequest(f"pid: give 1 to {MAX_PLOT_PARCELS} parcels, not {len(pids)}")
    info = parcels_info(conn, cfg, pids)
    known = dict(zip(info["ogc_fid"], range(len(info["ogc_fid"])), strict=True))
    missing = [p for p in pids if p not in known]
    if missing:
        raise NotFound(f"no parcel {missing[0]} in AOI {cfg.name}")
    panels = []
    for pid in pids:
        i = known[pid]
        crop = info["crop"][i] if "crop" in info else None
        panels.append({
            "label": f"parcel {pid}" + (f" ({crop})" if crop else ""),
            "s2": parcel_time_series(conn, cfg, pid, "s2", ("B04", "B08"), year=year) if "s2" in cfg.cards else {},
            "bs": parcel_time_series(conn, cfg, pid, "bs", ("VVb", "VHb"), year=year) if "bs" in cfg.cards else {}})
    title = (f"{cfg.name}{' ' + str(year) if year else ''}: NDVI from the B04/B08 parcel means (left axis), "
             "Sentinel-1 CARD-BS backscatter in dB (right axis)\ncanonical observations: one per parcel and datatake")
    return plot_parcels(panels, title)

