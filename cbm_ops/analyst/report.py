"""Run summaries: what a pipeline run did, from the database (not from task XComs)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from ..config import CARD_STAGES, AoiConfig
from ..db import q, transaction
from ..queue import status_counts

log = logging.getLogger(__name__)
CLOUDY_SCL = {"3", "8", "9", "10", "11"}   # classes that make a parcel-date not cloud-free (JRC clients)


def run_summary(url: str, cfg: AoiConfig, since: dt.datetime) -> dict[str, Any]:
    """Scenes, rows and throughput of the stages finished since ``since`` (UTC).

    Returns
    -------
    dict
        ``stages``: per stage and status the scenes, rows, parcels and processing
        seconds; ``rows_per_band`` and ``hists_rows`` of the scenes extracted since then;
        ``scenes_by_status``: the AOI's whole catalogue per card, stage and status;
        ``throughput``: rows/s and scenes/min over the processing time.
    """
    with transaction(url) as conn:
        stages = [dict(zip(("stage", "status", "scenes", "rows", "parcels", "seconds"), r, strict=True))
                  for r in conn.execute(q("run_stages", schema=cfg.schema), {"since": since})]
        bands = dict(conn.execute(q("run_rows_per_band", schema=cfg.schema), {"since": since}).fetchall())
        hists = _one(conn.execute(q("run_hists_rows", schema=cfg.schema), {"since": since}).fetchone())[0]
    done = [s for s in stages if s["status"] in ("extracted", "No parcels")]
    secs = sum(s["seconds"] for s in done)
    rows = sum(s["rows"] for s in done)
    scenes = sum(s["scenes"] for s in done)
    summary = {
        "aoi": cfg.name, "since": since.isoformat(), "stages": stages,
        "rows_per_band": {k.strip(): v for k, v in bands.items()}, "hists_rows": hists,
        "scenes_by_status": [dict(zip(("card", "stage", "status", "scenes"), r, strict=True))
                             for r in status_counts(url, cfg)],
        "throughput": {"scenes": scenes, "rows": rows, "processing_s": round(secs, 1),
                       "rows_per_s": round(rows / secs) if secs else None,
                       "scenes_per_min": round(scenes / secs * 60, 1) if secs else None},
    }
    lines = [f"{'stage':8} {'status':14} {'scenes':>6} {'rows':>10} {'seconds':>8}"]
    lines += [f"{s['stage']:8} {s['status']:14} {s['scenes']:6d} {s['rows']:10d} {s['seconds']:8.1f}"
              for s in stages]
    log.info("run summary of %s since %s:\n%s\nrows per band: %s; hists rows: %s; throughput: %s",
             cfg.name, since.isoformat(), "\n".join(lines), summary["rows_per_band"], hists,
             summary["throughput"])
    return summary


def _counts_by_band(rows: list[tuple[int, str, list[str]]], cfg: AoiConfig) -> dict[str, Any]:
    """Scenes with data per card, and how many of them have every configured band."""
    expected = {card: {b for s in stages if s in cfg.stages for b in cfg.stored_bands(s)}
                for card, stages in CARD_STAGES.items()}
    with_data: dict[str, int] = {c: 0 for c in cfg.cards}
    complete: dict[str, int] = {c: 0 for c in cfg.cards}
    for _obsid, card, bands in rows:
        card = card.strip()
        with_data[card] = with_data.get(card, 0) + 1
        if expected.get(card, set()) <= set(bands):
            complete[card] = complete.get(card, 0) + 1
    return {"scenes_with_parcel_data": with_data, "scenes_with_all_bands": complete}


def aoi_report(url: str, cfg: AoiConfig, *, series_bands: tuple[str, ...] = ("B04", "B08", "VVb", "VHb"),
               crop_column: str | None = None) -> dict[str, Any]:
    """Whole-AOI report: catalogue and stage status, rows per band, per-parcel counts.

    Parameters
    ----------
    series_bands : tuple of str
        The first Sentinel-2 band (``B..``) and the first Sentinel-1 band (``V..``) are the
        ones whose observations are counted per parcel.
    crop_column : str, optional
        Parcel attribute shown as the crop (default ``parcels.crop_column``).

    Returns
    -------
    dict
        ``scenes_by_card_and_status``, ``stages``, ``rows_per_band``, ``hists_rows``,
        ``scenes_per_card`` (every configured card, 0 included), ``scenes_with_parcel_data``,
        ``scenes_with_all_bands``, ``parcels`` (pid, name, kind, crop, S2 and S1
        observations, cloud-free S2 dates: no SCL 3, 8, 9, 10 or 11 in the parcel), all
        counted on the CANONICAL observations (one per parcel and datatake, the rule of
        ``include/sql/schema_views.sql``); ``clear`` {pid: {obstime: bool}} the cloud flag
        of every SCL histogram row. The time series themselves are served by
        :mod:`cbm_ops.analyst` and the parcel API.
    """
    crop = crop_column or cfg.parcels.crop_column
    s2_band = next((b for b in series_bands if b.startswith("B")), "B04")
    s1_band = next((b for b in series_bands if b.startswith("V")), "VVb")
    with transaction(url) as conn:
        s = cfg.schema
        by_status = [dict(zip(("card", "status", "scenes"), r, strict=True))
                     for r in conn.execute(q("report_catalogue_status", schema=s))]
        stages = [dict(zip(("card", "stage", "status", "scenes"), r, strict=True))
                  for r in conn.execute(q("report_stages", schema=s))]
        rows_per_band = dict(conn.execute(q("report_rows_per_band", schema=s)).fetchall())
        sigs_rows, hists_rows = _one(conn.execute(q("report_counts", schema=s)).fetchone())
        scene_bands = conn.execute(q("report_scene_bands", schema=s)).fetchall()
        parcels = conn.execute(q("report_parcels", schema=s, parcels=cfg.parcels.table)).fetchall()
        counts = {r[0]: r[1:] for r in conn.execute(q("report_parcel_observations", schema=s),
                                                     {"s2_band": s2_band, "s1_band": s1_band})}
        hists = conn.execute(q("report_hists", schema=s)).fetchall()
    clear: dict[int, dict] = {}
    for pid, t, hist in hists:          # every SCL histogram row (raw, not only canonical)
        clear.setdefault(pid, {})[t] = not (set(hist) & CLOUDY_SCL)
    per_card = {c: 0 for c in cfg.cards}
    for r in by_status:
        per_card[r["card"].strip()] = per_card.get(r["card"].strip(), 0) + r["scenes"]
    table = []
    for pid, attrs in parcels:
        s2_obs, s1_obs, n_clear = counts.get(pid, (0, 0, 0))
        table.append({"pid": pid, "name": attrs.get("name", pid), "kind": attrs.get("kind"),
                      "crop": attrs.get(crop) if crop else None,
                      "s2_obs": s2_obs, "s1_obs": s1_obs, "s2_cloud_free": n_clear})
    return {"aoi": cfg.name, "scenes_by_card_and_status": by_status, "stages": stages,
            "scenes_per_card": per_card, **_counts_by_band(scene_bands, cfg),
            "rows_per_band": rows_per_band, "sigs_rows": sigs_rows, "hists_rows": hists_rows,
            "parcels": table, "parcels_with_data": sum(1 for r in table if r["s2_obs"] or r["s1_obs"]),
            "clear": clear}


def _one(row: tuple | None) -> tuple:
    if row is None:                      # an aggregate always returns a row
        raise RuntimeError("aggregate query returned no row")
    return row
