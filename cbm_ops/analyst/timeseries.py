"""Parcel time series: canonical observations and their signatures (the JRC ``parcelTimeSeries``).

Time series are CANONICAL by default: one observation per parcel and datatake, chosen by
the rule documented in ``include/sql/schema_views.sql`` (most valid SCL pixels, then the
largest band count, the newest baseline, the smallest product name); ``raw=True`` returns
every granule's rows with a ``canonical`` flag.

From a notebook::

    from cbm_ops import analyst
    from cbm_ops.config import get_aoi
    from cbm_ops.db import transaction

    cfg = get_aoi("demo_flanders")
    with transaction(url) as conn:
        ts = analyst.parcel_time_series(conn, cfg, pid=20, tstype="s2", year=2018)
    # ts["date_part"], ts["band"], ts["mean"], ts["ndvi"], ts["cloudfree"] ...

Latency of the time series (``make bench``): :func:`time_series_latency`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from math import isfinite
from typing import Any

from ..config import STAGES, AoiConfig
from ..db import q, transaction
from ..errors import BadRequest
from .queries import as_columns, epoch_seconds, finite, parcel_bbox, read_only, stage_lineage, year_window

# tstype of the JRC API -> card of dias_catalogue
TSTYPES = {"s2": "s2", "bs": "bs", "c6": "c6", "scl": "s2"}
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
CARD_BANDS = {"s2": S2_BANDS, "bs": ("VVb", "VHb"), "c6": ("VVc", "VHc")}
STAT_COLUMNS = ("count", "mean", "std", "min", "max", "p25", "p50", "p75")
_BASE = ["date_part", "obstime", "obsid", "datatake"]     # the first columns of every series


def check_bands(tstype: str, bands: Sequence[str] | None) -> tuple[str, ...] | None:
    """Validate a band filter for ``tstype``.

    Parameters
    ----------
    tstype : {"s2", "bs", "c6", "scl"}
    bands : sequence of str, optional
        Band codes as stored in sigs (``B04``, ``VVb``, ``VHc``); items may hold several
        codes separated by commas.

    Returns
    -------
    tuple of str or None
        The codes, or None for all bands.

    Raises
    ------
    BadRequest
        For an unknown tstype, a code that is not a band of that card, or any band for scl.
    """
    if tstype not in TSTYPES:
        raise BadRequest(f"tstype: {tstype!r} is not one of {', '.join(TSTYPES)}")
    if not bands:
        return None
    codes = tuple(c.strip() for b in bands for c in str(b).split(",") if c.strip())
    if not codes:
        return None
    if tstype == "scl":
        raise BadRequest("band: the scl time series has no bands (it returns SCL histograms)")
    allowed = CARD_BANDS[TSTYPES[tstype]]
    bad = [c for c in codes if c not in allowed]
    if bad:
        raise BadRequest(f"band: {bad[0][:20]!r} is not a {tstype} band (one of {', '.join(allowed)})")
    return tuple(dict.fromkeys(codes))


def _stage_of_band(cfg: AoiConfig) -> dict[tuple[str, str], str]:
    """(card, stored band code) -> stage that writes it; SCL -> scl."""
    out = {}
    for stage, (card, _kind) in STAGES.items():
        for b in cfg.stored_bands(stage):
            out[(card, b)] = stage
    return out



def parcel_observations(conn, cfg: AoiConfig, pid: int, cards: Sequence[str] = ("s2", "bs", "c6"),
                        year: int | None = None, raw: bool = False, with_hist: bool = True) -> list[dict[str, Any]]:
    """The observations of one parcel: scenes with sigs or hists rows for it.

    Parameters
    ----------
    pid : int
        Parcel id (``ogc_fid``).
    cards : sequence of {"s2", "bs", "c6"}
    year : int, optional
        Calendar year of the sensing time (UTC); default all.
    raw : bool
        Every granule's observation (with ``canonical`` and ``duplicates``) instead of only
        the canonical one per datatake.
    with_hist : bool
        Return the SCL histograms (else ``hist`` is None; less to transfer and parse).

    Returns
    -------
    list of dict
        By sensing time: obsid, obstime, card, sensor, datatake, reference, tile, epsg,
        relative_orbit, orbit_direction, processing_baseline, scl_pixels (SCL pixels with
        data), max_count (largest band count), hist (SCL histogram), cloudfree,
        canonical, duplicates (observations of the same datatake).

    Raises
    ------
    NotFound
        Unknown pid.
    BadRequest
        Invalid year.
    """
    start, end = year_window(year)
    bbox = parcel_bbox(conn, cfg, pid)
    cur = conn.execute(q("api_parcel_observations", schema=cfg.schema),
                       {"pid": pid, "cards": list(cards), "start": start, "end": end, "bbox": bbox,
                        "with_hist": with_hist})
    names = [c.name for c in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur]
    for r in rows:
        r["card"], r["sensor"] = r["card"].strip(), r["sensor"].strip()
    return rows if raw else [r for r in rows if r["canonical"]]



def parcel_time_series(conn, cfg: AoiConfig, pid: int, tstype: str = "s2", bands: Sequence[str] | None = None,
                       raw: bool = False, year: int | None = None, *, scl: bool = True, ref: bool = False,
                       lineage: bool = False, screened_only: bool = False) -> dict[str, list]:
    """Time series of one parcel (the JRC ``parcelTimeSeries``), one row per observation and band.

    Parameters
    ----------
    conn : psycopg.Connection
    cfg : AoiConfig
    pid : int
        Parcel id (``ogc_fid``).
    tstype : {"s2", "bs", "c6", "scl"}
        Sentinel-2 bands, CARD-BS backscatter, CARD-COH6 coherence, or the SCL histograms.
    bands : sequence of str, optional
        Band filter (``B04``, ``VVb`` ...; comma-separated items allowed); default all.
    raw : bool
        Every granule's rows (adds ``canonical`` and ``duplicates``) instead of the
        canonical observation per datatake.
    year : int, optional
        Calendar year of the sensing time (UTC).
    scl : bool
        s2: add the per-date ``cloudfree`` flag and ``hist``, the parcel's SCL histogram.
    screened_only : bool
        s2 with ``scl``: only observations that have an SCL histogram, as the JRC API
        (its s2 query inner-joins the histograms; the ``cbm`` client's plots fail on a
        row without ``hist``).
    ref : bool
        Add the product name (``reference``).
    lineage : bool
        Add ``lineage``: the lineage record of the stage that wrote the row (None for
        rows written before lineage was recorded).

    Returns
    -------
    dict of str to list
        Equal-length columns, by sensing time, observation and band:

        * ``date_part`` (epoch seconds, float; sensing time UTC), ``obstime`` (ISO 8601 UTC),
          ``obsid``, ``datatake``;
        * s2/bs/c6: ``band``, ``count`` (valid pixels), ``mean``, ``std`` (ddof 0), ``min``,
          ``max``, ``p25``, ``p50``, ``p75`` (numpy linear percentiles) as stored: S2 DN on
          the pre-04.00 scale (reflectance = value / 10000, BOA_ADD_OFFSET applied), S1
          CARD-BS linear gamma0 power (dB = 10 log10), CARD-COH6 coherence 0-1;
        * s2: ``tile``, ``epsg``, ``ndvi`` = (B08 - B04) / (B08 + B04) of the observation's
          band means (None without both); with ``scl`` ``cloudfree`` (no SCL 3, 8, 9, 10, 11
          in the parcel; None without SCL histogram) and ``hist`` (``{"4": 95, ...}``);
        * bs/c6: ``relative_orbit``, ``orbit_direction``;
        * scl: ``tile``, ``epsg``, ``scl_pixels``, ``cloudfree``, ``hist`` ({"4": 95, ...}).

    Raises
    ------
    BadRequest
        Unknown tstype, band not of that card, invalid year.
    NotFound
        Unknown pid.

    Notes
    -----
    Served by the primary keys only (no pid index needed): the parcel's box selects the
    scenes whose footprint is near it, then one (obsid, pid) probe of sigs and hists per
    scene. The latency is measured by :func:`time_series_latency`.
    """
    codes = check_bands(tstype, bands)
    card = TSTYPES[tstype]
    obs = parcel_observations(conn, cfg, pid, (card,), year, raw=True,
                              with_hist=tstype == "scl" or (card == "s2" and scl))
    if not raw:
        obs = [o for o in obs if o["canonical"]]
    if card == "s2" and scl and screened_only:
        obs = [o for o in obs if o["hist"] is not None]
    lin = stage_lineage(conn, cfg, [o["obsid"] for o in obs]) if lineage else {}
    extra = (["canonical", "duplicates"] if raw else []) + (["reference"] if ref else []) + \
        (["lineage"] if lineage else [])
    if tstype == "scl":
        return _scl_series(obs, lin, extra)
    names = _BASE + ["band", *STAT_COLUMNS]
    names += (["tile", "epsg", "ndvi"] + (["cloudfree", "hist"] if scl else [])) if card == "s2" else \
        ["relative_orbit", "orbit_direction"]
    return _band_series(conn, cfg, pid, card, codes, obs, lin, names + extra)


def _scl_series(obs: list[dict[str, Any]], lin: dict[int, dict[str, dict[str, Any]]], extra: list[str]
                ) -> dict[str, list]:
    """The SCL histogram time series of :func:`parcel_time_series` (observations with a histogram)."""
    names = _BASE + ["tile", "epsg", "scl_pixels", "cloudfree", "hist"] + extra
    rows = []
    for o in obs:
        if o["hist"] is None:
            continue
        rows.append({**o, "date_part": epoch_seconds(o["obstime"]), "obstime": o["obstime"].isoformat(),
                     "lineage": lin.get(o["obsid"], {}).get("scl", {}).get("lineage")})
    return as_columns(names, rows)


def _ndvi(srows: list[tuple]) -> float | None:
    """(B08 - B04) / (B08 + B04) of an observation's band means, None without both."""
    means = {r[0]: finite(r[2]) for r in srows}
    b4, b8 = means.get("B04"), means.get("B08")
    if b4 is not None and b8 is not None and b4 + b8 != 0:
        return finite(round((b8 - b4) / (b8 + b4), 6))
    return None


def _band_series(conn, cfg: AoiConfig, pid: int, card: str, codes: tuple[str, ...] | None,
                 obs: list[dict[str, Any]], lin: dict[int, dict[str, dict[str, Any]]], names: list[str]
                 ) -> dict[str, list]:
    """The signature rows of :func:`parcel_time_series`: one per observation and band."""
    want = set(codes or CARD_BANDS[card])
    fetch = tuple(dict.fromkeys((*(codes or CARD_BANDS[card]), *(("B04", "B08") if card == "s2" else ()))))
    sig_rows: dict[int, list[tuple]] = {}
    if obs:
        cur = conn.execute(q("api_parcel_sigs", schema=cfg.schema),
                           {"obsids": [o["obsid"] for o in obs], "pid": pid, "bands": list(fetch)})
        for row in cur:
            sig_rows.setdefault(row[0], []).append(row[1:])
    stage_of = _stage_of_band(cfg)
    per_obs = [n for n in names if n not in STAT_COLUMNS and n not in ("band", "lineage")]
    with_lineage = "lineage" in names
    rows: list[tuple] = []
    for o in obs:
        srows = sig_rows.get(o["obsid"], [])
        values = {**o, "date_part": epoch_seconds(o["obstime"]), "obstime": o["obstime"].isoformat(),
                  "ndvi": _ndvi(srows) if card == "s2" else None}
        common = tuple(values.get(n) for n in per_obs)
        stages = lin.get(o["obsid"], {})
        for band, *stats in srows:
            if band not in want:
                continue
            # NaN, inf (not JSON) as None
            row = (*common, band, *[v if v is None or isfinite(v) else None for v in stats])
            if with_lineage:
                row += (stages.get(stage_of.get((card, band), ""), {}).get("lineage"),)
            rows.append(row)
    order = [*per_obs, "band", *STAT_COLUMNS, *(["lineage"] if with_lineage else [])]
    cols = dict(zip(order, map(list, zip(*rows, strict=True)), strict=True)) if rows else {n: [] for n in order}
    return {n: cols[n] for n in names}


def time_series_latency(url: str, cfg: AoiConfig, pids: Sequence[int], tstype: str = "s2",
                        year: int | None = None, repeat: int = 1) -> dict[str, Any]:
    """Wall time of :func:`parcel_time_series` per call, as the API runs it.

    Each call takes a pooled connection, makes its transaction read-only with the
    statement timeout, and runs the query (bbox, observations, signatures), as one API
    request does without HTTP and JSON. For ``make bench``::

        from cbm_ops.analyst import time_series_latency
        time_series_latency(url, cfg, pids=random_pids, tstype="s2", repeat=1)

    Parameters
    ----------
    pids : sequence of int
        Parcels to query, in order (use random pids: a repeated pid is served from cache).
    repeat : int
        Passes over ``pids``.

    Returns
    -------
    dict
        ``calls``, ``rows`` (total returned), ``p50_ms``, ``p95_ms``, ``max_ms``.
    """
    times, rows = [], 0
    for _ in range(repeat):
        for pid in pids:
            t0 = time.perf_counter()
            with transaction(url) as conn:
                read_only(conn)
                ts = parcel_time_series(conn, cfg, int(pid), tstype, year=year)
            times.append((time.perf_counter() - t0) * 1000)
            rows += len(ts["date_part"])
    times.sort()
    if not times:
        return {"calls": 0, "rows": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
    return {"calls": len(times), "rows": rows, "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(p95, 2), "max_ms": round(times[-1], 2)}
