"""The tasks and task groups of the ``cbm_<aoi>`` DAG, one factory per pipeline stage.

Each factory, called inside the DAG body, adds one stage of the card (``dags/cbm_aoi.py``
wires them): ``setup``, the ``catalogue`` harvest per card, ``rasterize`` per S2 lattice,
one extraction group per stage (``plan`` + mapped ``extract`` batches), the checks
(``completeness``, ``order_s1_card``), ``cleanup``, ``summary`` and ``verdict``. Every task
calls one library function of :mod:`cbm_ops`; the run-window rule is
:func:`cbm_ops.runs.run_windows`. This module defines no DAG and is imported by the DAG
files (the DAG folder is on ``sys.path``); only YAML is read at parse time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk import Param, TriggerRule, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException

from cbm_ops.config import STAGES, AoiConfig
from cbm_ops.runs import RunWindows

log = logging.getLogger(__name__)

CARD_TITLES = {"s2": "s2: Sentinel-2 L2A", "bs": "bs: Sentinel-1 CARD-BS backscatter",
               "c6": "c6: Sentinel-1 CARD-COH6 coherence"}
STAGE_TITLES = {"scl": "scl: S2 SCL histograms (20 m)", "s2_10m": "s2_10m: S2 10 m bands",
                "s2_20m": "s2_20m: S2 20 m bands", "bs": "bs: S1 backscatter VV/VH",
                "c6": "c6: S1 coherence VV/VH"}


# --------------------------------------------------------------------------- helpers
def db_url(cfg: AoiConfig) -> str:
    """The results database URL from the AOI's Airflow connection (never logged)."""
    from cbm_hook import CbmHook

    return CbmHook(db_conn_id=cfg.db_conn_id).db_url()


def scene_store(cfg: AoiConfig):
    """The AOI's scene store, S3 credentials from its Airflow connection."""
    from cbm_ops.extract.store import make_store

    if cfg.store.kind != "s3":
        return make_store(cfg)
    from cbm_hook import CbmHook

    creds, endpoint = CbmHook(db_conn_id=cfg.db_conn_id, s3_conn_id=cfg.store.conn_id).s3_settings()
    return make_store(cfg, s3_credentials=creds, s3_endpoint=endpoint)


def extract_retry_delay(cfg: AoiConfig) -> dt.timedelta:
    """Retry delay of the rasterize and extract tasks: a dead worker's batch is retried soon."""
    return dt.timedelta(minutes=cfg.extract_retry_delay_minutes)


def windows(cfg: AoiConfig, ctx: Mapping[str, Any]) -> RunWindows:
    """This run's windows (:func:`cbm_ops.runs.run_windows`); a bad Param fails the task for good."""
    from cbm_ops.errors import RunWindowError
    from cbm_ops.runs import run_windows

    run = ctx["dag_run"]
    try:
        return run_windows(cfg, ctx["params"], run_type=str(getattr(run, "run_type", "manual")),
                           data_interval=(run.data_interval_start, run.data_interval_end), run_after=run.run_after)
    except RunWindowError as exc:
        raise AirflowFailException(str(exc)) from None


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


# --------------------------------------------------------------------------- setup and harvest
def setup_task(cfg: AoiConfig):
    """``setup``: create/upgrade the schema; import the parcels on the first run (or on request)."""
    @task(task_id="setup")
    def setup() -> dict[str, Any]:
        from cbm_ops.db import ensure_schema, q, transaction
        from cbm_ops.parcels import import_parcels

        ctx = get_current_context()
        url = db_url(cfg)
        ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
        with transaction(url) as conn:
            has_aoi = conn.execute(q("aoi_get", schema=cfg.schema), {"name": cfg.name}).fetchone()
        out: dict[str, Any] = {"schema": cfg.schema, "windows": windows(cfg, ctx).as_dict()}
        if cfg.parcels.source and (has_aoi is None or not has_aoi[1] or ctx["params"]["reimport_parcels"]):
            rep = import_parcels(url, cfg)
            out["parcels"] = {"parcels": rep.parcels, "repaired": rep.repaired,
                              "empty": len(rep.empty_ids), "unchanged": rep.unchanged}
        elif has_aoi is None:
            raise RuntimeError(f"AOI {cfg.name} has no parcels: set parcels.source or run "
                               f"`cbm import-parcels --aoi {cfg.name}`")
        log.info("setup: %s", out)
        return out

    return setup()


def catalogue_group(cfg: AoiConfig):
    """``catalogue``: one harvest task per card (a failed card does not stop the others)."""
    @task_group(group_id="catalogue")
    def catalogue():
        for card in cfg.cards:
            harvest_task(cfg, card)

    return catalogue()


def harvest_task(cfg: AoiConfig, card: str):
    """``harvest_<card>``: the run's harvest window, widened back over outages when scheduled."""
    @task(task_id=f"harvest_{card}")
    def harvest() -> dict[str, Any]:
        from cbm_ops.harvest import harvest as do_harvest
        from cbm_ops.harvest import widened_window

        ctx = get_current_context()
        if not ctx["params"]["harvest"] or card not in ctx["params"]["cards"]:
            log.info("harvest of %s not requested in this run", card)
            return {"skipped": True}
        w = windows(cfg, ctx)
        start, end = w.harvest
        if start is None or end is None:
            log.info("the run's window is outside the AOI's campaign %s..%s: nothing to harvest",
                     cfg.start_date, cfg.end_date)
            return {"skipped": True}
        widened_from = note = None
        if w.mode == "continuous":       # after an outage longer than the look-back: back to the last harvest
            new_start, end, note = widened_window(db_url(cfg), cfg, card, start, end)
            if note:
                widened_from, start = start, new_start
        out = do_harvest(db_url(cfg), cfg, start, end, cards=[card], widened_from=widened_from, note=note).as_dict()
        return out | {"window": [str(start), str(end)], "widened": note}

    return harvest()


# --------------------------------------------------------------------------- rasterize and extract
def rasterize_group(cfg: AoiConfig):
    """``rasterize``: the parcel index of every S2 lattice (EPSG x resolution), one mapped task each."""
    @task_group(group_id="rasterize")
    def rasterize():
        @task(trigger_rule=TriggerRule.ALL_DONE)   # a failed harvest of one card must not stop the others
        def plan_grids() -> list[dict[str, Any]]:
            """EPSG x resolution of the AOI's Sentinel-2 lattices."""
            from cbm_ops.db import q, transaction

            if "s2" not in cfg.cards:
                return []
            with transaction(db_url(cfg)) as conn:
                epsgs = [r[0] for r in conn.execute(q("catalogue_s2_epsgs", schema=cfg.schema))]
            res = ([10.0] if cfg.bands.get("s2_10m") else []) + \
                  ([20.0] if cfg.bands.get("s2_20m") or cfg.bands.get("scl") else [])
            return [{"epsg": e, "resolution": r} for e in epsgs for r in res]

        # The label is rendered from the task's arguments before it starts (Airflow renders
        # map_index_template early), so it shows while the task runs and if its worker dies.
        @task(map_index_template="EPSG:{{ task.op_kwargs['epsg'] }} {{ '%g' | format(task.op_kwargs['resolution'])"
                                 " }} m", pool=cfg.pool, retry_delay=extract_retry_delay(cfg))
        def rasterize_grid(epsg: int, resolution: float) -> dict[str, Any]:
            from cbm_ops.grid.stored import rasterize_aoi

            log.info("rasterize: parcels on the EPSG:%s %g m lattice", epsg, resolution)
            return rasterize_aoi(db_url(cfg), cfg, epsgs=[epsg], resolutions=[resolution])[0]

        rasterize_grid.expand_kwargs(plan_grids())

    return rasterize()


def stage_group(cfg: AoiConfig, stage: str):
    """``<stage>``: ``plan`` (batches of pending scenes) and the mapped ``extract`` tasks."""
    @task_group(group_id=stage)
    def group():
        batches = plan_task(cfg, stage)
        if cfg.docker.enabled:
            docker_extract(cfg, stage, batches)
            return

        # Labelled from the batch argument before the task starts (see rasterize_grid).
        @task(map_index_template="{{ task.op_kwargs['batch']['label'] }}", pool=cfg.pool,
              retry_delay=extract_retry_delay(cfg))
        def extract(batch: dict[str, Any]) -> dict[str, Any]:
            from cbm_ops.extract import run_queue

            ti = get_current_context()["ti"]
            log.info("batch %s: %s %d scenes %s (map index %s, try %s)", batch["label"], stage,
                     len(batch["obsids"]), batch["obsids"], ti.map_index, ti.try_number)
            label = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}"
            # scenes of the batch that another worker holds are waited for (and taken over when
            # their holder is gone), up to the lease: the stage must not end without them
            out = run_queue(db_url(cfg), cfg, stage, obsids=batch["obsids"], owner_label=label,
                            store=scene_store(cfg), wait_held_s=cfg.lease_minutes * 60.0)
            out["results"] = [{k: r.get(k) for k in ("obsid", "status", "rows")} for r in out["results"]]
            return out

        extract.expand(batch=batches)

    return group()


def plan_task(cfg: AoiConfig, stage: str):
    """``plan``: the stage's pending scenes in at most ``max_batches`` batches (obsid lists)."""
    @task(trigger_rule=TriggerRule.ALL_DONE)   # failed batches upstream do not stop this stage
    def plan() -> list[dict[str, Any]]:
        from cbm_ops.queue import pending
        from cbm_ops.runs import make_batches

        ctx = get_current_context()
        if stage not in ctx["params"]["stages"] or STAGES[stage][0] not in ctx["params"]["cards"]:
            log.info("stage %s not requested in this run", stage)
            return []
        w = windows(cfg, ctx)
        if w.extract is None:
            note = (f"{stage}: nothing to do in this run ({w.mode}): its data interval starts "
                    f"after the AOI's end_date {cfg.end_date}; trigger a run with start/end to "
                    "extract campaign dates")
        else:
            todo = pending(db_url(cfg), cfg, stage, *w.extract)
            batches = make_batches(todo, cfg.batch_size, cfg.max_batches)
            log.info("%s: %d pending scenes in %d batches", stage, len(todo), len(batches))
            if batches:
                return batches
            note = nothing_pending_note(cfg, stage, w, ctx)
        log.warning("%s", note)
        ctx["ti"].xcom_push(key="note", value=note)
        return []

    return plan()


def nothing_pending_note(cfg: AoiConfig, stage: str, w: RunWindows, ctx: Mapping[str, Any]) -> str:
    """Why a stage of this run has no scene to extract (logged and shown in the summary)."""
    from cbm_ops.queue import status_counts

    start, end = w.extract or (None, None)
    window = f"sensed in [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})" if start and end else "of the AOI"
    card = STAGES[stage][0]
    harvest = ctx["ti"].xcom_pull(task_ids=f"catalogue.harvest_{card}") or {}
    found = (f"the harvest of this run read {harvest.get('read', 0)} {card} records "
             f"({harvest.get('inserted', 0)} new)" if harvest and not harvest.get("skipped")
             else "this run did not harvest")
    counts = {st: n for _, sg, st, n in status_counts(db_url(cfg), cfg) if sg == stage}
    return (f"{stage}: no scene {window} is waiting for extraction ({w.mode} run); {found}; "
            f"{stage} scenes of the AOI by status: {counts or 'none'}. Extracted scenes are not extracted "
            "again (re-run them with `cbm requeue`); 'inprogress' ones are held by another "
            "run or by a dead worker until its lease expires.")


def docker_extract(cfg: AoiConfig, stage: str, batches):
    """Mapped DockerOperator running ``cbm extract`` in the configured image.

    The database URL reaches the container only through ``private_environment``, filled
    at execute time (never templated, rendered in the UI or logged).
    """
    from airflow.providers.docker.operators.docker import DockerOperator
    from docker.types import Mount

    class CbmDockerOperator(DockerOperator):
        def execute(self, context):
            # the provider passes _private_environment to the container (docker provider 4.6)
            self._private_environment = {**self._private_environment, "CBM_DB_URL": db_url(cfg)}
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


# --------------------------------------------------------------------------- checks and closing
def completeness_task(cfg: AoiConfig):
    """``completeness``: expected acquisitions (revisit pattern) vs harvested vs extracted over
    the run's harvest window; a warning lists the gaps; fails past ``fail_above_pct``."""
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def completeness() -> dict[str, Any]:
        from cbm_ops.harvest.completeness import completeness as check

        ctx = get_current_context()
        if not cfg.completeness.enabled:
            return {"skipped": "completeness.enabled is off"}
        start, end = windows(cfg, ctx).harvest
        if start is None or end is None:
            return {"skipped": "outside the campaign"}
        done = [ctx["ti"].xcom_pull(task_ids=f"catalogue.harvest_{c}") or {} for c in cfg.cards]
        start = min([start, *(dt.datetime.fromisoformat(x["window"][0]) for x in done if x.get("window"))])
        rep = check(db_url(cfg), cfg, start, end, cards=[c for c in ctx["params"]["cards"] if c in cfg.cards])
        (log.warning if rep.gaps else log.info)("%s", rep.table())
        if rep.failed:
            raise AirflowFailException(rep.failure_message())
        return rep.as_dict()

    return completeness()


def order_task(cfg: AoiConfig):
    """``order_s1_card``: order the S1 source products of the window without a CARD
    counterpart (Airflow connection ``ordering.conn_id``) and poll the open orders."""
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def order_s1_card() -> dict[str, Any]:
        from airflow.sdk import BaseHook

        from cbm_ops.harvest import ordering

        start, end = windows(cfg, get_current_context()).harvest
        if start is None or end is None:
            return {"skipped": "outside the campaign"}
        client = ordering.client_from_connection(cfg, BaseHook.get_connection(cfg.ordering.conn_id))
        rep = ordering.run_ordering(db_url(cfg), cfg, start, end, client)
        for p in rep.problems:
            log.error("%s", p)
        if rep.problems:
            raise AirflowFailException(f"{len(rep.problems)} orders refused/failed: {rep.problems[0]}")
        return rep.as_dict()

    return order_s1_card()


def cleanup_task(cfg: AoiConfig):
    """``cleanup``: stuck and retryable-failed scenes back to the queue."""
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def cleanup() -> dict[str, Any]:
        from cbm_ops.queue import cleanup as do_cleanup

        rep = do_cleanup(db_url(cfg), cfg)
        return {"requeued": {k: len(v) for k, v in rep.requeued.items()},
                "rows_deleted": rep.rows_deleted, "permanent": rep.permanent}

    return cleanup()


def summary_task(cfg: AoiConfig):
    """``summary``: scenes by status, rows written, throughput of this run (also in the log)."""
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def summary() -> dict[str, Any]:
        from cbm_ops.analyst.report import run_summary
        from cbm_ops.runs import naive_utc

        ctx = get_current_context()
        since = naive_utc(ctx["dag_run"].start_date) or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        out = run_summary(db_url(cfg), cfg, since)
        notes = {st: ctx["ti"].xcom_pull(task_ids=f"{st}.plan", key="note") for st in cfg.stages}
        out["nothing_to_extract"] = {st: n for st, n in notes.items() if n}
        for n in out["nothing_to_extract"].values():
            log.warning("%s", n)
        return out

    return summary()


def verdict_task():
    """``verdict``: fail the run if any of its tasks failed.

    Every task is upstream of cleanup, and cleanup and summary wait for all of their
    upstream tasks (all_done), so when this runs every other task instance of the run has
    its final state: read them from the execution API instead of wiring every task to it.
    """
    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def verdict() -> str:
        ctx = get_current_context()
        ti, run_id = ctx["ti"], ctx["dag_run"].run_id
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
        failed = sorted(k for k, v in states.items() if k != ti.task_id and str(v) in ("failed", "upstream_failed"))
        if failed:
            raise AirflowFailException(f"{len(failed)} task instance(s) of this run failed or could not run: "
                                       + ", ".join(failed[:50]) + ". Their scenes are still pending: fix the "
                                       "cause (the task's log; the worker's own log if the task log could not be "
                                       "written, e.g. a full disk), then clear the failed tasks with their "
                                       "downstream (UI: Clear, 'Only failed' + 'Downstream')")
        return f"all {len(states) - 1} other task instances succeeded or were skipped"

    return verdict()
