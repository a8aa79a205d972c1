"""Run summaries: what a pipeline run did, from the database (not from task XComs)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from .config import AoiConfig
from .db import q, transaction
from .queue import status_counts

log = logging.getLogger(__name__)


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
        hists = conn.execute(q("run_hists_rows", schema=cfg.schema), {"since": since}).fetchone()[0]
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
