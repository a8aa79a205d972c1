"""cbm-airflow: one extraction DAG per AOI file in ``include/aois`` (``CBM_AOI_DIR``).

``cbm_<aoi>``: setup -> catalogue harvest (S2 L2A, CARD-BS, CARD-COH6) -> UTM rasterization
(mapped over EPSG x resolution) -> the extraction stages of each card in pipeline order
(S2: SCL -> 10 m -> 20 m; S1 bs and c6 in parallel) -> faulty-scene cleanup -> run summary
-> verdict. A failed harvest or batch does not stop the other cards and stages (their
planners run when upstream is done); the verdict task, after everything else, fails the run
if any task failed. Each extraction stage is a mapped task over batches of scenes, capped
at ``max_batches`` map indexes, throttled by the AOI's pool and labelled with its scenes.

Runs (the rule is ``cbm_ops.runs``):

* scheduled (continuous mode): harvests ``[interval start - lookback_days, interval end]``,
  widened back over any time no successful harvest covered, and extracts every pending
  scene of the AOI, so earlier failures are retried; a completeness task compares the
  acquisitions the revisit pattern implies with what was harvested and extracted; with
  ``ordering.enabled`` the missing Sentinel-1 CARD products are ordered; once the interval
  starts after the AOI's ``end_date`` a scheduled run does nothing;
* backfill (``airflow backfill create``): harvests and extracts the run's interval only,
  so parallel backfill runs share the work;
* manual (UI/CLI): Params ``start``/``end`` (dates, ``end`` exclusive) restrict harvest and
  extraction; without them the look-back window before the trigger time is harvested and
  every pending scene extracted. ``cards`` and ``stages`` select parts of the pipeline.
  A stage that finds nothing to extract says why in its plan log and in the run summary.

The tasks are built by the factories of ``dags/cbm_tasks.py``. This file only reads YAML at
parse time: no database, network or heavy imports.
"""

from __future__ import annotations

import datetime as dt

import cbm_tasks as tasks
from airflow.sdk import chain, dag
from airflow.timetables.interval import CronDataIntervalTimetable

from cbm_ops.config import CARD_STAGES, AoiConfig, load_valid


def build_dag(cfg: AoiConfig):
    """The extraction DAG of one AOI."""

    @dag(
        dag_id=f"cbm_{cfg.name}",
        description=cfg.description or f"CbM parcel extraction for AOI {cfg.name}",
        schedule=CronDataIntervalTimetable(cfg.schedule, timezone="UTC") if cfg.schedule else None,
        start_date=dt.datetime.combine(cfg.start_date, dt.time(), tzinfo=dt.UTC),
        # cfg.end_date is not the DAG's end_date: Airflow would create no task instance for
        # manual runs after it. It bounds the harvest window instead (cbm_ops.runs).
        catchup=False,
        max_active_runs=cfg.max_active_runs,
        tags=["cbm", cfg.name, *cfg.tags],
        default_args={"retries": cfg.retries, "retry_delay": dt.timedelta(minutes=cfg.retry_delay_minutes)},
        params=tasks.dag_params(cfg),
        doc_md=__doc__,
    )
    def aoi_dag():
        catalogue, rasterize = tasks.catalogue_group(cfg), tasks.rasterize_group(cfg)
        chain(tasks.setup_task(cfg), catalogue, rasterize)
        checks = [tasks.completeness_task(cfg)] + ([tasks.order_task(cfg)] if cfg.ordering.enabled else [])
        catalogue >> checks
        tails = []
        for card in cfg.cards:                 # cards in parallel, each card's stages in pipeline order
            groups = [tasks.stage_group(cfg, stage) for stage in CARD_STAGES[card] if stage in cfg.stages]
            if groups:
                chain(rasterize, *groups)
                tails.append(groups[-1])
        # every task is upstream of cleanup: the verdict sees their final states
        chain([*(tails or [rasterize]), *checks], tasks.cleanup_task(cfg), tasks.summary_task(cfg),
              tasks.verdict_task())

    return aoi_dag()


# An invalid AOI file leaves the other AOIs' DAGs in place; dags/cbm_config_check.py shows
# it as an import error that names the file.
for _cfg in load_valid()[0].values():
    globals()[f"cbm_{_cfg.name}"] = build_dag(_cfg)
