"""cbm-airflow: one extraction DAG per AOI file in ``include/aois`` (``CBM_AOI_DIR``).

``cbm_<aoi>``: setup -> catalogue harvest (S2 L2A, CARD-BS, CARD-COH6) -> UTM rasterization
(mapped over EPSG x resolution) -> S2 SCL -> S2 10 m -> S2 20 m, and S1 bs / c6 in
parallel -> faulty-scene cleanup -> run summary -> verdict. A failed harvest or batch does
not stop the other cards and stages (their planners run when upstream is done); the
verdict task, after everything else, reads the states of the run's task instances and
fails the run if any task failed (one edge instead of one from every task). Each
extraction stage is a mapped task over batches of scenes, capped at ``max_batches`` map
indexes and throttled by the AOI's pool; each map index is labelled with the scenes it
covers from the moment it starts, and its log opens with the batch.

Runs:
* scheduled (continuous mode): harvests ``[interval start - lookback_days, interval end]``,
  widened back over any time no successful harvest covered (an outage longer than the
  look-back loses nothing), and extracts every pending scene of the AOI, so earlier
  failures are retried; a completeness task compares the acquisitions the revisit
  pattern implies with what was harvested and extracted (a warning listing the gaps;
  it fails the run past ``completeness.fail_above_pct``); when ``ordering.enabled``, the
  missing Sentinel-1 CARD products are ordered from the DIAS; once the
  interval starts after the AOI's ``end_date`` (campaign over) a scheduled run does
  nothing, so the run that unpausing creates is harmless;
* backfill (``airflow backfill create``): harvests and extracts the run's interval only,
  so parallel backfill runs share the work;
* manual (UI/CLI): Params ``start``/``end`` (dates, ``end`` exclusive) restrict harvest and
  extraction; without them the lookback window before the trigger time is harvested and
  every pending scene extracted. ``cards`` and ``stages`` select parts of the pipeline.
  A stage that finds nothing to extract says why in its plan log and in the run summary
  (scenes already extracted, or held by another run).

This file only reads YAML at parse time: no database, network or heavy imports.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from airflow.sdk import Param, TriggerRule, dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

from cbm_ops.config import CARD_STAGES, AoiConfig, load_valid

log = logging.getLogger(__name__)
UTC = dt.UTC


def _urls(cfg: AoiConfig) -> str:
    from cbm_plugin import CbmHook

    return CbmHook(db_conn_id=cfg.db_conn_id).db_url()


def _store(cfg: AoiConfig):
    from cbm_ops.store import make_store

    if cfg.store.kind != "s3":
        return make_store(cfg)
    from cbm_plugin import CbmHook

    creds, endpoint = CbmHook(db_conn_id=cfg.db_conn_id, s3_conn_id=cfg.store.conn_id).s3_settings()
    return make_store(cfg, s3_credentials=creds, s3_endpoint=endpoint)


def _naive(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def run_windows(cfg: AoiConfig, context: dict[str, Any]) -> dict[str, Any]:
    """Harvest and extraction windows of this run (naive UTC datetimes or None).

    The harvest window is clipped to the AOI's ``[start_date, end_date]`` (the campaign);
    it is ``(None, None)`` when nothing of it is left.
    """
    w = _windows(cfg, context)
    lo = dt.datetime.combine(cfg.start_date, dt.time())
    hi = dt.datetime.combine(cfg.end_date, dt.time()) if cfg.end_date else None
    start, end = w["harvest"]
    if w["mode"] == "continuous" and hi is not None and w["interval"][0] >= hi:
        # The campaign is over: a scheduled run (e.g. the one unpausing creates) must not
        # take the scenes that manual runs were started for.
        w.update(harvest=(None, None), extract=None, mode="continuous, campaign over")
        return w
    start = max(start, lo)
    end = min(end, hi) if hi else end
    w["harvest"] = (start, end) if start < end else (None, None)
    return w


def _date(params: dict[str, Any], key: str) -> dt.datetime | None:
    """A date Param as a naive UTC datetime (the form and the API validate the format)."""
    v = params.get(key)
    if not v:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(str(v)[:10]), dt.time())
    except ValueError:
        raise AirflowFailException(f"Param {key}={v!r} is not a date YYYY-MM-DD") from None


def _windows(cfg: AoiConfig, context: dict[str, Any]) -> dict[str, Any]:
    params = context["params"]
    run = context["dag_run"]
    run_type = str(getattr(run, "run_type", "manual")).lower()
    lookback = dt.timedelta(days=cfg.lookback_days)
    start, end = _date(params, "start"), _date(params, "end")
    if end and not start:
        raise AirflowFailException(f"Param end={params['end']!r} needs a start")
    if start:
        end = end or _naive(run.run_after) or dt.datetime.now(UTC).replace(tzinfo=None)
        if end <= start:
            raise AirflowFailException(f"Param end {end:%Y-%m-%d} is not after start {start:%Y-%m-%d} "
                                       "(end is exclusive: the window is [start, end))")
        return {"harvest": (start, end), "extract": (start, end), "mode": "manual window"}
    di_start, di_end = _naive(run.data_interval_start), _naive(run.data_interval_end)
    if "backfill" in run_type and di_start and di_end:
        return {"harvest": (di_start, di_end), "extract": (di_start, di_end), "mode": "backfill"}
    if di_start and di_end and "manual" not in run_type:
        return {"harvest": (di_start - lookback, di_end), "extract": (None, None), "mode": "continuous",
                "interval": (di_start, di_end)}
    anchor = _naive(run.run_after) or dt.datetime.now(UTC).replace(tzinfo=None)
    return {"harvest": (anchor - lookback, anchor), "extract": (None, None), "mode": "manual"}


def make_batches(pending: list[tuple[int, str]], batch_size: int, max_batches: int) -> list[dict[str, Any]]:
    """Split pending scenes (obsid, reference) into at most ``max_batches`` batches."""
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


CARD_TITLES = {"s2": "s2: Sentinel-2 L2A", "bs": "bs: Sentinel-1 CARD-BS backscatter",
               "c6": "c6: Sentinel-1 CARD-COH6 coherence"}
STAGE_TITLES = {"scl": "scl: S2 SCL histograms (20 m)", "s2_10m": "s2_10m: S2 10 m bands",
                "s2_20m": "s2_20m: S2 20 m bands", "bs": "bs: S1 backscatter VV/VH",
                "c6": "c6: S1 coherence VV/VH"}


def dag_params(cfg: AoiConfig) -> dict[str, Param]:
    """The Params of the Trigger form: dates validated as dates, choices as multi-selects.

    ``format: date`` makes the form show a date picker and makes Airflow refuse a run
    whose ``start``/``end`` is not ``YYYY-MM-DD`` when it is triggered (UI, REST API,
    CLI), instead of failing its tasks after their retries. ``examples`` with the allowed
    values makes the form show a multi-select for ``cards`` and ``stages``.
    """
    cards, stages = list(cfg.cards), list(cfg.stages)
    return {
        "start": Param(None, type=["null", "string"], format="date", title="Window start (UTC date)",
                       description="Harvest and extract the scenes sensed from 00:00 UTC of this day on "
                                   "(manual runs). Empty: harvest the look-back window before now and extract "
                                   "every pending scene."),
        "end": Param(None, type=["null", "string"], format="date", title="Window end (UTC date, exclusive)",
                     description="The window ends at 00:00 UTC of this day, which is not included: "
                                 "start 2018-05-01, end 2018-06-01 is the whole of May. Empty: now."),
        "cards": Param(cards, type="array", items={"type": "string", "enum": cards}, examples=cards,
                       values_display={c: CARD_TITLES[c] for c in cards}, title="CARD types",
                       description="CARD types to harvest and extract: " + ", ".join(CARD_TITLES[c] for c in cards)
                                   + "."),
        "stages": Param(stages, type="array", items={"type": "string", "enum": stages}, examples=stages,
                        values_display={s: STAGE_TITLES[s] for s in stages}, title="Extraction stages",
                        description="Stages to run: " + ", ".join(STAGE_TITLES[s] for s in stages)
                                    + ". S2 band stages need the scene's SCL stage done."),
        "harvest": Param(True, type="boolean", title="Harvest the catalogue first",
                         description="Off: extract only scenes already in the catalogue."),
        "reimport_parcels": Param(False, type="boolean", title="Re-import the parcels",
                                  description="Re-import parcels.source of the AOI file (refused if results "
                                              "exist)."),
    }


def build_dag(cfg: AoiConfig):
    """The extraction DAG of one AOI."""
    schedule = CronDataIntervalTimetable(cfg.schedule, timezone="UTC") if cfg.schedule else None
    stages = cfg.stages
    extract_retry = dt.timedelta(minutes=cfg.extract_retry_delay_minutes)

    @dag(
        dag_id=f"cbm_{cfg.name}",
        description=cfg.description or f"CbM parcel extraction for AOI {cfg.name}",
        schedule=schedule,
        start_date=dt.datetime.combine(cfg.start_date, dt.time(), tzinfo=UTC),
        # cfg.end_date is not the DAG's end_date: Airflow would create no task instance for
        # manual runs after it. It bounds the harvest window instead (run_windows).
        catchup=False,
        max_active_runs=cfg.max_active_runs,
        tags=["cbm", cfg.name, *cfg.tags],
        default_args={"retries": cfg.retries, "retry_delay": dt.timedelta(minutes=cfg.retry_delay_minutes)},
        params=dag_params(cfg),
        doc_md=__doc__,
    )
    def aoi_dag():
        @task
        def setup() -> dict[str, Any]:
            """Create/upgrade the schema; import the parcels on first run (or on request)."""
            from cbm_ops.db import ensure_schema, transaction
            from cbm_ops.parcels import import_parcels

            ctx = get_current_context()
            url = _urls(cfg)
            ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
            with transaction(url) as conn:
                from cbm_ops.db import q

                has_aoi = conn.execute(q("aoi_get", schema=cfg.schema), {"name": cfg.name}).fetchone()
            out: dict[str, Any] = {"schema": cfg.schema, "windows": {
                k: [str(x) if x else None for x in v] if isinstance(v, tuple) else v
                for k, v in run_windows(cfg, ctx).items()}}
            if cfg.parcels.source and (has_aoi is None or not has_aoi[1] or ctx["params"]["reimport_parcels"]):
                rep = import_parcels(url, cfg)
                out["parcels"] = {"parcels": rep.parcels, "repaired": rep.repaired,
                                  "empty": len(rep.empty_ids), "unchanged": rep.unchanged}
            elif has_aoi is None:
                raise RuntimeError(f"AOI {cfg.name} has no parcels: set parcels.source or run "
                                   f"`python -m cbm_ops import-parcels --aoi {cfg.name}`")
            log.info("setup: %s", out)
            return out

        # Task group functions return nothing, so that calling them gives the TaskGroup
        # (group >> group then links all leaves to all roots) rather than an XComArg.
        @task_group(group_id="catalogue")
        def catalogue_group():
            for card in cfg.cards:
                @task(task_id=f"harvest_{card}")
                def harvest(card: str = card) -> dict[str, Any]:
                    from cbm_ops.catalogue import harvest as do_harvest

                    ctx = get_current_context()
                    if not ctx["params"]["harvest"] or card not in ctx["params"]["cards"]:
                        log.info("harvest of %s not requested in this run", card)
                        return {"skipped": True}
                    w = run_windows(cfg, ctx)
                    start, end = w["harvest"]
                    if start is None:
                        log.info("the run's window is outside the AOI's campaign %s..%s: nothing to harvest",
                                 cfg.start_date, cfg.end_date)
                        return {"skipped": True}
                    widened_from = note = None
                    if w["mode"] == "continuous":
                        from cbm_ops.catalogue import widened_window

                        # after an outage longer than the look-back: back to the last harvest
                        new_start, end, note = widened_window(_urls(cfg), cfg, card, start, end)
                        if note:
                            widened_from, start = start, new_start
                    out = do_harvest(_urls(cfg), cfg, start, end, cards=[card], widened_from=widened_from,
                                     note=note).as_dict()
                    return out | {"window": [str(start), str(end)], "widened": note}

                harvest()

        @task_group(group_id="rasterize")
        def rasterize_group():
            @task(trigger_rule=TriggerRule.ALL_DONE)   # a failed harvest of one card must not stop the others
            def plan_grids() -> list[dict[str, Any]]:
                """EPSG x resolution of the AOI's Sentinel-2 lattices."""
                from cbm_ops.db import q, transaction

                if "s2" not in cfg.cards:
                    return []
                with transaction(_urls(cfg)) as conn:
                    epsgs = [r[0] for r in conn.execute(q("catalogue_s2_epsgs", schema=cfg.schema))]
                res = ([10.0] if cfg.bands.get("s2_10m") else []) + \
                      ([20.0] if cfg.bands.get("s2_20m") or cfg.bands.get("scl") else [])
                return [{"epsg": e, "resolution": r} for e in epsgs for r in res]

            # The label is rendered from the task's arguments before it starts (Airflow renders
            # map_index_template early), so it shows while the task runs and if its worker dies.
            @task(map_index_template="EPSG:{{ task.op_kwargs['epsg'] }} {{ '%g' | format(task.op_kwargs['resolution'])"
                                     " }} m",
                  pool=cfg.pool, retry_delay=extract_retry)
            def rasterize_grid(epsg: int, resolution: float) -> dict[str, Any]:
                from cbm_ops.rasterize import rasterize_aoi

                log.info("rasterize: parcels on the EPSG:%s %g m lattice", epsg, resolution)
                return rasterize_aoi(_urls(cfg), cfg, epsgs=[epsg], resolutions=[resolution])[0]

            rasterize_grid.expand_kwargs(plan_grids())

        def stage_group(stage: str):
            @task_group(group_id=stage)
            def group():
                @task(trigger_rule=TriggerRule.ALL_DONE)   # failed batches upstream do not stop this stage
                def plan() -> list[dict[str, Any]]:
                    """Batches of the stage's pending scenes (obsid lists)."""
                    from cbm_ops.queue import pending

                    ctx = get_current_context()
                    card = next(c for c, st in CARD_STAGES.items() if stage in st)
                    if stage not in ctx["params"]["stages"] or card not in ctx["params"]["cards"]:
                        log.info("stage %s not requested in this run", stage)
                        return []
                    w = run_windows(cfg, ctx)
                    if w["extract"] is None:
                        note = (f"{stage}: nothing to do in this run ({w['mode']}): its data interval starts "
                                f"after the AOI's end_date {cfg.end_date}; trigger a run with start/end to "
                                "extract campaign dates")
                        log.warning("%s", note)
                        ctx["ti"].xcom_push(key="note", value=note)
                        return []
                    start, end = w["extract"]
                    todo = pending(_urls(cfg), cfg, stage, start, end)
                    batches = make_batches(todo, cfg.batch_size, cfg.max_batches)
                    log.info("%s: %d pending scenes in %d batches", stage, len(todo), len(batches))
                    if not batches:
                        note = nothing_pending_note(cfg, stage, w, ctx)
                        log.warning("%s", note)
                        ctx["ti"].xcom_push(key="note", value=note)
                    return batches

                batches = plan()
                if cfg.docker.enabled:
                    _docker_extract(cfg, stage, batches)
                    return

                # Labelled from the batch argument before the task starts (see rasterize_grid).
                @task(map_index_template="{{ task.op_kwargs['batch']['label'] }}", pool=cfg.pool,
                      retry_delay=extract_retry)
                def extract(batch: dict[str, Any]) -> dict[str, Any]:
                    from cbm_ops.extract import run_queue

                    ctx = get_current_context()
                    ti = ctx["ti"]
                    log.info("batch %s: %s %d scenes %s (map index %s, try %s)", batch["label"], stage,
                             len(batch["obsids"]), batch["obsids"], ti.map_index, ti.try_number)
                    label = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}"
                    out = run_queue(_urls(cfg), cfg, stage, obsids=batch["obsids"], owner_label=label,
                                    store=_store(cfg))
                    out["results"] = [{k: r.get(k) for k in ("obsid", "status", "rows")} for r in out["results"]]
                    return out

                extract.expand(batch=batches)

            return group()

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def cleanup() -> dict[str, Any]:
            """Faulty-scene cleanup: stuck and retryable-failed scenes back to the queue."""
            from cbm_ops.queue import cleanup as do_cleanup

            rep = do_cleanup(_urls(cfg), cfg)
            return {"requeued": {k: len(v) for k, v in rep.requeued.items()},
                    "rows_deleted": rep.rows_deleted, "permanent": rep.permanent}

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def summary() -> dict[str, Any]:
            """Scenes by status, rows written, throughput of this run (also in the log)."""
            from cbm_ops.report import run_summary

            ctx = get_current_context()
            run = ctx["dag_run"]
            since = _naive(run.start_date) or dt.datetime.now(UTC).replace(tzinfo=None)
            out = run_summary(_urls(cfg), cfg, since)
            notes = {st: ctx["ti"].xcom_pull(task_ids=f"{st}.plan", key="note") for st in stages}
            out["nothing_to_extract"] = {st: n for st, n in notes.items() if n}
            for n in out["nothing_to_extract"].values():
                log.warning("%s", n)
            return out

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def completeness() -> dict[str, Any]:
            """Expected acquisitions (revisit pattern) vs harvested vs extracted over the
            run's harvest window: a warning lists the gaps; fails past fail_above_pct."""
            from cbm_ops.completeness import completeness as check

            ctx = get_current_context()
            if not cfg.completeness.enabled:
                return {"skipped": "completeness.enabled is off"}
            start, end = run_windows(cfg, ctx)["harvest"]
            if start is None:
                return {"skipped": "outside the campaign"}
            windows = [ctx["ti"].xcom_pull(task_ids=f"catalogue.harvest_{c}") or {} for c in cfg.cards]
            starts = [dt.datetime.fromisoformat(x["window"][0]) for x in windows if x.get("window")]
            start = min([start, *starts])
            rep = check(_urls(cfg), cfg, start, end,
                        cards=[c for c in ctx["params"]["cards"] if c in cfg.cards])
            (log.warning if rep.gaps else log.info)("%s", rep.table())
            if rep.failed:
                raise AirflowFailException(rep.failure_message())
            return rep.as_dict()

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def order_s1_card() -> dict[str, Any]:
            """Order the S1 GRD/SLC products of the window without CARD counterpart (DIAS
            processing service, Airflow connection ordering.conn_id); poll open orders."""
            from airflow.sdk import BaseHook

            from cbm_ops import ordering

            ctx = get_current_context()
            start, end = run_windows(cfg, ctx)["harvest"]
            if start is None:
                return {"skipped": "outside the campaign"}
            client = ordering.client_from_connection(cfg, BaseHook.get_connection(cfg.ordering.conn_id))
            rep = ordering.run_ordering(_urls(cfg), cfg, start, end, client)
            for p in rep.problems:
                log.error("%s", p)
            if rep.problems:
                raise AirflowFailException(f"{len(rep.problems)} orders refused/failed: {rep.problems[0]}")
            return rep.as_dict()

        s = setup()
        cat = catalogue_group()
        ras = rasterize_group()
        s >> cat >> ras
        checks = [completeness()]
        if cfg.ordering.enabled:
            checks.append(order_s1_card())
        for t in checks:
            cat >> t
        groups = {st: stage_group(st) for st in stages}
        chain_s2 = [groups[st] for st in ("scl", "s2_10m", "s2_20m") if st in groups]
        for a, b in zip(chain_s2, chain_s2[1:], strict=False):
            a >> b
        heads = chain_s2[:1] + [groups[st] for st in ("bs", "c6") if st in groups]
        tails = chain_s2[-1:] + [groups[st] for st in ("bs", "c6") if st in groups]
        for h in heads:
            ras >> h

        @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
        def verdict() -> str:
            """Fail the run if any of its tasks failed.

            Every task is upstream of cleanup, and cleanup and summary wait for all of
            their upstream tasks (all_done), so when this runs every other task instance
            of the run has its final state: read them from the execution API instead of
            wiring every task to this one.
            """
            ctx = get_current_context()
            ti, run_id = ctx["ti"], ctx["dag_run"].run_id
            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
            failed = sorted(k for k, v in states.items()
                            if k != ti.task_id and str(v) in ("failed", "upstream_failed"))
            if failed:
                raise AirflowFailException(f"{len(failed)} task instance(s) of this run failed or could not run: "
                                           + ", ".join(failed[:50]))
            return f"all {len(states) - 1} other task instances succeeded or were skipped"

        c = cleanup()
        for t in tails or [ras]:
            t >> c
        for t in checks:                   # upstream of cleanup: the verdict sees their final state
            t >> c
        c >> summary() >> verdict()

    return aoi_dag()


def nothing_pending_note(cfg: AoiConfig, stage: str, w: dict[str, Any], ctx: dict[str, Any]) -> str:
    """Why a stage of this run has no scene to extract (logged and shown in the summary)."""
    from cbm_ops.queue import status_counts

    start, end = w["extract"]
    window = f"sensed in [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})" if start else "of the AOI"
    card = next(c for c, st in CARD_STAGES.items() if stage in st)
    harvest = ctx["ti"].xcom_pull(task_ids=f"catalogue.harvest_{card}") or {}
    found = (f"the harvest of this run read {harvest.get('read', 0)} {card} records "
             f"({harvest.get('inserted', 0)} new)" if harvest and not harvest.get("skipped")
             else "this run did not harvest")
    counts = {st: n for _, sg, st, n in status_counts(_urls(cfg), cfg) if sg == stage}
    return (f"{stage}: no scene {window} is waiting for extraction ({w['mode']} run); {found}; "
            f"{stage} scenes of the AOI by status: {counts or 'none'}. Extracted scenes are not extracted "
            "again (re-run them with `python -m cbm_ops requeue`); 'inprogress' ones are held by another "
            "run or by a dead worker until its lease expires.")


def _docker_extract(cfg: AoiConfig, stage: str, batches):
    """Mapped DockerOperator running ``python -m cbm_ops extract`` in the configured image.

    The database URL reaches the container only through ``private_environment``, filled
    at execute time (never templated, rendered in the UI or logged).
    """
    from airflow.providers.docker.operators.docker import DockerOperator
    from docker.types import Mount

    class CbmDockerOperator(DockerOperator):
        def execute(self, context):
            self.private_environment = {**(self.private_environment or {}), "CBM_DB_URL": _urls(cfg)}
            return super().execute(context)

    mounts = [Mount(source=m.source, target=m.target, type="bind", read_only=m.read_only)
              for m in cfg.docker.mounts]

    @task
    def commands(batches: list[dict[str, Any]]) -> list[list[str]]:
        # command is a templated field: each mapped instance renders its own label, so a
        # retry takes over the scenes its predecessor's container still had leased
        label = "{{ ti.dag_id }}/{{ ti.run_id }}/{{ ti.task_id }}/{{ ti.map_index }}"
        return [["python", "-m", "cbm_ops", "extract", "--aoi", cfg.name, "--stage", stage,
                 "--owner-label", label, *[x for o in b["obsids"] for x in ("--obsid", str(o))]]
                for b in batches]

    return CbmDockerOperator.partial(
        task_id="extract_docker", image=cfg.docker.image, docker_url=cfg.docker.docker_url,
        network_mode=cfg.docker.network_mode, mounts=mounts, auto_remove=cfg.docker.auto_remove,
        mount_tmp_dir=False, pool=cfg.pool,
    ).expand(command=commands(batches))


# An invalid AOI file leaves the other AOIs' DAGs in place; dags/cbm_config_check.py shows
# it as an import error that names the file.
for _cfg in load_valid()[0].values():
    globals()[f"cbm_{_cfg.name}"] = build_dag(_cfg)
