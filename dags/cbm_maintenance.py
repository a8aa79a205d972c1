"""cbm-airflow: one maintenance DAG per AOI, ``cbm_<aoi>_maintenance`` (weekly and on demand).

Opt-in deletion of sigs rows of fully cloud-covered parcel-dates (SCL 9 only), VACUUM
ANALYZE, CLUSTER of sigs and hists on pid (autocommit; skipped while scenes are being
extracted), a pg_dump backup of the AOI schema (catalogue, parcels, results) to
``maintenance.backup_dir`` and an export of the year's canonical signatures (Parquet) and
the parcels (GeoParquet) to ``maintenance.export_dir``. Params override the AOI's
``maintenance`` settings.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param, chain, dag, get_current_context, task

from cbm_ops.config import AoiConfig, load_valid

UTC = dt.UTC


def _url(cfg: AoiConfig) -> str:
    from cbm_hook import CbmHook

    return CbmHook(db_conn_id=cfg.db_conn_id).db_url()


def maintenance_params(cfg: AoiConfig) -> dict[str, Param]:
    """Params of the Trigger form; they override the AOI's ``maintenance`` settings."""
    m = cfg.maintenance
    return {
        "delete_cloudy_sigs": Param(m.delete_cloudy_sigs, type="boolean",
                                    description="Delete sigs of parcel-dates with SCL 9 only."),
        "cluster": Param(m.cluster, type="boolean", description="CLUSTER sigs and hists on pid."),
        "backup": Param(bool(m.backup_dir), type="boolean",
                        description=f"pg_dump the schema to {m.backup_dir or '(backup_dir not set)'}."),
        # export (cbm_ops.analyst.export): on by default only where maintenance.export_dir is set
        "export": Param(bool(m.export_dir), type="boolean",
                        description="Write the canonical signatures (Parquet) and parcels (GeoParquet) to "
                                    f"{m.export_dir or '(export_dir not set)'}."),
        "export_year": Param(None, type=["null", "integer"],
                             description="Year to export; default the run's year, within the campaign."),
    }


def delete_cloudy_task(cfg: AoiConfig):
    @task
    def delete_cloudy_sigs() -> dict[str, Any]:
        from cbm_ops.db.maintenance import delete_cloudy_sigs as run

        if not get_current_context()["params"]["delete_cloudy_sigs"]:
            return {"skipped": "delete_cloudy_sigs is off"}
        return {"deleted": run(_url(cfg), cfg)}

    return delete_cloudy_sigs()


def vacuum_cluster_task(cfg: AoiConfig):
    @task
    def vacuum_cluster() -> dict[str, Any]:
        from cbm_ops.db.maintenance import vacuum_cluster as run

        cluster = get_current_context()["params"]["cluster"]
        if not (cfg.maintenance.vacuum or cluster):      # as run_maintenance: vacuum off and no CLUSTER asked
            return {"skipped": "maintenance.vacuum is off and cluster is not requested"}
        return run(_url(cfg), cfg, cluster=cluster)

    return vacuum_cluster()


def backup_task(cfg: AoiConfig):
    @task
    def backup() -> dict[str, Any]:
        from cbm_ops.db.maintenance import backup as run

        if not get_current_context()["params"]["backup"]:
            return {"skipped": "backup is off"}
        target = cfg.resolve(cfg.maintenance.backup_dir)
        if target is None:
            raise ValueError(f"AOI {cfg.name}: maintenance.backup_dir is not set")
        return {"file": str(run(_url(cfg), cfg, target))}

    return backup()


def export_task(cfg: AoiConfig):
    @task
    def export() -> dict[str, Any]:
        from cbm_ops.analyst.export import export as run

        ctx = get_current_context()
        if not ctx["params"]["export"]:
            return {"skipped": "export is off"}
        if not cfg.maintenance.export_dir:
            raise ValueError(f"AOI {cfg.name}: maintenance.export_dir is not set")
        year = ctx["params"]["export_year"] or ctx["dag_run"].run_after.year
        last = cfg.end_date.year if cfg.end_date else year
        return run(_url(cfg), cfg, max(cfg.start_date.year, min(year, last)), "parquet",
                   cfg.resolve(cfg.maintenance.export_dir))

    return export()


def build_maintenance_dag(cfg: AoiConfig):
    @dag(
        dag_id=f"cbm_{cfg.name}_maintenance",
        description=f"CbM database maintenance for AOI {cfg.name}",
        schedule=cfg.maintenance.schedule,
        start_date=dt.datetime.combine(cfg.start_date, dt.time(), tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        tags=["cbm", "maintenance", cfg.name],
        params=maintenance_params(cfg),
        doc_md=__doc__,
    )
    def maintenance_dag():
        chain(delete_cloudy_task(cfg), vacuum_cluster_task(cfg), backup_task(cfg), export_task(cfg))

    return maintenance_dag()


for _cfg in load_valid()[0].values():        # an invalid AOI file: see dags/cbm_config_check.py
    globals()[f"cbm_{_cfg.name}_maintenance"] = build_maintenance_dag(_cfg)
