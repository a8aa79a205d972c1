"""Command line: ``python -m cbm_ops <command> --aoi NAME [options]``.

The database URL comes from ``--db-url``, ``CBM_DB_URL`` or ``AIRFLOW_CONN_<CONN_ID>``
(the AOI's ``db_conn_id``). Run ``python -m cbm_ops <command> --help`` for each command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys

from .config import CARD_STAGES, STAGES, get_aoi
from .db import ConfigError, db_url_from_env, is_connection_lost

log = logging.getLogger("cbm_ops")


def _date(s: str) -> dt.datetime:
    """ISO 8601 date/time as naive UTC (the catalogue's times); an offset is converted."""
    try:
        t = dt.datetime.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {s!r}") from None
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m cbm_ops", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True)

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--aoi", required=True, help="AOI name (include/aois/NAME.yaml) or YAML path")
        p.add_argument("--db-url", help="database URL (default: CBM_DB_URL / AIRFLOW_CONN_<ID>)")
        return p

    cmd("init-db", "create or upgrade the AOI's schema and tables")
    cmd("migrate-partitions", "convert unpartitioned sigs/hists of an earlier version to partitioned "
        "tables (in place, no row copied)")

    p = cmd("import-parcels", "import a parcel file into PostGIS and set the AOI row")
    p.add_argument("--file", help="parcel file (default: parcels.source of the AOI)")
    p.add_argument("--layer", help="layer of the file (default: parcels.layer or the first)")
    p.add_argument("--aoi-wkt", help="AOI outline in EPSG:4326 WKT (default: parcel extent)")
    p.add_argument("--replace", action="store_true",
                   help="allow replacing a different parcel set that already has results")

    p = cmd("harvest", "harvest CARD scenes over the AOI into dias_catalogue")
    p.add_argument("--start", type=_date, help="window start (default: AOI start_date)")
    p.add_argument("--end", type=_date, help="window end (default: now)")
    p.add_argument("--card", action="append", choices=list(CARD_STAGES),
                   help="card(s) to harvest (default: the AOI's cards)")

    p = cmd("rasterize", "rasterize the parcels on the UTM grids of the AOI's S2 scenes")
    p.add_argument("--epsg", type=int, action="append", help="only this EPSG (repeatable)")
    p.add_argument("--resolution", type=float, action="append", help="only this resolution (m)")

    p = cmd("extract", "claim and process pending scenes of a stage until none is left")
    p.add_argument("--stage", action="append", choices=list(STAGES),
                   help="stage(s) in order (default: all stages of the AOI, pipeline order)")
    p.add_argument("--start", type=_date, help="only scenes sensed from this time")
    p.add_argument("--end", type=_date, help="only scenes sensed before this time")
    p.add_argument("--limit", type=int, help="stop after this many scenes per stage")
    p.add_argument("--obsid", type=int, action="append", help="only these scenes (repeatable)")
    p.add_argument("--owner-label", default="",
                   help="stable caller name (e.g. the Airflow task instance); a rerun with the same "
                        "label takes over scenes its crashed predecessor still has leased")

    cmd("status", "scenes per card, stage and status")
    cmd("cleanup", "requeue stuck and retryable-failed scenes (faulty-scene cleanup)")

    p = cmd("requeue", "re-run scenes: put their stages back in the queue")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--obsid", type=int, action="append", help="scene id (repeatable)")
    g.add_argument("--all", action="store_true", help="every scene of the AOI (after a parcel-set replacement)")
    p.add_argument("--stage", action="append", choices=list(STAGES))

    p = cmd("release", "accept quarantined scene stages: lift the quality gate for them and extract them")
    p.add_argument("--obsid", type=int, action="append", required=True)
    p.add_argument("--stage", action="append", choices=list(STAGES), help="only these stages (default: all)")
    p.add_argument("--no-extract", action="store_true", help="only put them back in the queue")

    p = cmd("maintenance", "cloudy-sigs deletion (opt-in), VACUUM ANALYZE, CLUSTER, backup")
    p.add_argument("--delete-cloudy", action="store_true", help="force the opt-in deletion")
    p.add_argument("--no-cluster", action="store_true")
    p.add_argument("--backup-dir", help="pg_dump target (default: maintenance.backup_dir)")

    # --- harvest checks and S1 CARD ordering (docs/harvest.md)
    p = cmd("completeness", "expected acquisitions (revisit pattern) vs harvested vs extracted")
    p.add_argument("--start", type=_date, help="window start (default: AOI start_date)")
    p.add_argument("--end", type=_date, help="window end (default: now)")
    p.add_argument("--card", action="append", choices=list(CARD_STAGES), help="card(s) (default: the AOI's)")
    p.add_argument("--fail-above", type=float, metavar="PCT",
                   help="exit code 3 when a card misses more than PCT %% (default: completeness.fail_above_pct)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")

    cmd("harvest-log", "the latest harvests of the AOI (window, ok/failed, counts)")

    p = cmd("order", "order the S1 CARD products missing over the AOI from the DIAS processing service")
    p.add_argument("--start", type=_date, help="window start (default: AOI start_date)")
    p.add_argument("--end", type=_date, help="window end (default: now)")
    p.add_argument("--card", action="append", choices=["bs", "c6"], help="card(s) (default: ordering.cards)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be ordered (no credentials needed)")

    p = cmd("order-status", "poll the open orders (with credentials) and list every order")
    p.add_argument("--no-poll", action="store_true", help="only list what is recorded")
    # ---
    p = cmd("export", "write the canonical signatures of a year (Parquet or CSV) and the parcels (GeoParquet)")
    p.add_argument("--year", type=int, required=True, choices=range(2014, 2101), metavar="YEAR",
                   help="calendar year of the sensing time (UTC)")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="signatures format")
    p.add_argument("--out-dir", help="target directory (default: maintenance.export_dir, else export/)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import psycopg

    try:
        cfg = get_aoi(args.aoi)
        url = args.db_url or db_url_from_env(cfg.db_conn_id)
        result = _run(args, cfg, url)
    except (ConfigError, LookupError, OSError, RuntimeError, ValueError) as exc:
        # operator errors (bad configuration, missing AOI/parcels/store, a target path that
        # is a file, catalogue or import failures, an outage longer than db_retry_minutes)
        # as one line
        log.error("%s: %s", type(exc).__name__, _one_line(exc))
        log.debug("traceback (-v)", exc_info=True)
        return 2
    except psycopg.OperationalError as exc:
        if is_connection_lost(exc):
            log.error("database unreachable: %s", _one_line(exc))
            log.debug("traceback (-v)", exc_info=True)
            return 3
        log.error("database error (%s): %s", type(exc).__name__, _one_line(exc))   # e.g. a lock timeout
        log.debug("traceback (-v)", exc_info=True)
        return 2
    except psycopg.Error as exc:
        # refused by PostgreSQL/PostGIS, e.g. an invalid --aoi-wkt
        log.error("database refused the command (%s): %s", type(exc).__name__, _one_line(exc))
        log.debug("traceback (-v)", exc_info=True)
        return 2
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] if text else type(exc).__name__


def _run(args: argparse.Namespace, cfg, url: str):
    from . import db

    if args.command == "init-db":
        db.ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
        return None
    if args.command == "migrate-partitions":
        from .partitions import migrate

        return migrate(url, cfg)
    if args.command == "import-parcels":
        from .parcels import import_parcels

        return import_parcels(url, cfg, args.file, layer=args.layer, aoi_wkt=args.aoi_wkt,
                              replace=args.replace).__dict__
    if args.command == "harvest":
        from .catalogue import harvest

        db.ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
        lo = dt.datetime.combine(cfg.start_date, dt.time())
        hi = dt.datetime.combine(cfg.end_date, dt.time()) if cfg.end_date else None
        start = max(args.start or lo, lo)                   # the campaign bounds every harvest, as in the DAG
        end = args.end or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        end = min(end, hi) if hi else end
        if start >= end:
            log.warning("harvest window %s..%s is outside the AOI's campaign %s..%s: nothing to harvest",
                        args.start, args.end, cfg.start_date, cfg.end_date)
            return {"skipped": "outside the campaign"}
        return harvest(url, cfg, start, end, args.card).as_dict()
    if args.command == "rasterize":
        from .rasterize import rasterize_aoi

        return rasterize_aoi(url, cfg, epsgs=args.epsg, resolutions=args.resolution)
    if args.command == "extract":
        from .extract import run_queue

        db.ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
        return {s: run_queue(url, cfg, s, start=args.start, end=args.end, limit=args.limit,
                             obsids=args.obsid, owner_label=args.owner_label)
                for s in (args.stage or cfg.stages)}
    if args.command == "status":
        from .queue import status_counts

        return [dict(zip(("card", "stage", "status", "scenes"), r, strict=True)) for r in status_counts(url, cfg)]
    if args.command == "cleanup":
        from .queue import cleanup

        return cleanup(url, cfg).__dict__
    if args.command == "requeue":
        from .queue import requeue

        return {"requeued": requeue(url, cfg, None if args.all else args.obsid, args.stage)}
    if args.command == "release":
        from .extract import run_queue
        from .queue import DEPENDENTS, accept_quarantined

        released = accept_quarantined(url, cfg, args.obsid, args.stage)
        out: dict = {"released": [{"obsid": o, "stage": s} for o, s in released]}
        if not released:
            log.warning("no Quarantined stage among obsids %s", args.obsid)
        if released and not args.no_extract:
            stages = {s for _, s in released}
            stages |= {d for s in stages for d in DEPENDENTS.get(s, ()) if d in cfg.stages}
            out["extracted"] = {s: run_queue(url, cfg, s, obsids=args.obsid)["by_status"]
                                for s in cfg.stages if s in stages}
        return out
    if args.command == "maintenance":
        from .maintenance import run_maintenance

        return run_maintenance(url, cfg, delete_cloudy=args.delete_cloudy or None,
                               cluster=False if args.no_cluster else None,
                               backup_dir=args.backup_dir)
    if args.command in ("completeness", "harvest-log", "order", "order-status"):
        return _run_harvest_checks(args, cfg, url)
    if args.command == "export":
        from .export import export

        return export(url, cfg, args.year, args.format, args.out_dir)
    raise AssertionError(args.command)


# --- harvest checks and S1 CARD ordering (docs/harvest.md)
def _run_harvest_checks(args: argparse.Namespace, cfg, url: str):
    from . import db

    db.ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
    if args.command == "harvest-log":
        from .catalogue import harvest_history

        return harvest_history(url, cfg)
    start = getattr(args, "start", None) or dt.datetime.combine(cfg.start_date, dt.time())
    end = getattr(args, "end", None) or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if args.command == "completeness":
        from .completeness import completeness

        rep = completeness(url, cfg, start, end, cards=args.card, fail_above_pct=args.fail_above)
        if args.json:
            print(json.dumps(rep.as_dict(), indent=2, default=str))
        else:
            print(rep.table())
        if rep.failed:
            log.error("%s", rep.failure_message())
            raise SystemExit(3)
        return None
    from . import ordering

    if args.command == "order":
        client = None if args.dry_run else ordering.client_from_env(cfg)
        orep = ordering.run_ordering(url, cfg, start, end, client, dry_run=args.dry_run, cards=args.card)
        if orep.problems:
            print(json.dumps(orep.as_dict(), indent=2, default=str))
            for line in orep.problems:
                log.error("%s", line)
            raise SystemExit(3)
        return orep.as_dict()
    if not args.no_poll:
        ordering.poll(url, cfg, ordering.client_from_env(cfg), force=True)
    return ordering.order_status(url, cfg)
# ---


if __name__ == "__main__":
    sys.exit(main())
