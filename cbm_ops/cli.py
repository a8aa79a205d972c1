"""Command line: ``cbm <command> --aoi NAME [options]`` (also ``python -m cbm_ops``).

The database URL comes from ``--db-url``, ``CBM_DB_URL`` or ``AIRFLOW_CONN_<CONN_ID>``
(the AOI's ``db_conn_id``). Run ``cbm <command> --help`` for each command. Operator errors
(configuration, a refused import, PostGIS refusing an input, an unreachable database) are
one line and a non-zero exit (2; 3 for an unreachable database or a failed check).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from .config import CARD_STAGES, STAGES, AoiConfig, get_aoi
from .db import db_url_from_env, ensure_schema, is_connection_lost
from .errors import ConfigError

log = logging.getLogger("cbm_ops")

Command = Callable[[argparse.Namespace, AoiConfig, str], Any]


def _date(s: str) -> dt.datetime:
    """ISO 8601 date/time as naive UTC (the catalogue's times); an offset is converted."""
    try:
        t = dt.datetime.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {s!r}") from None
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cbm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True)

    def cmd(name: str, help_: str, run: Command) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--aoi", required=True, help="AOI name (include/aois/NAME.yaml) or YAML path")
        p.add_argument("--db-url", help="database URL (default: CBM_DB_URL / AIRFLOW_CONN_<ID>)")
        p.set_defaults(run=run)
        return p

    for add in (_setup_commands, _harvest_commands, _extract_commands, _operations_commands):
        add(cmd)
    _api_user_commands(sub)
    return ap


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", type=_date, help="window start (default: AOI start_date)")
    p.add_argument("--end", type=_date, help="window end (default: now)")


# --------------------------------------------------------------------------- schema and parcels
def _setup_commands(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    cmd("init-db", "create or upgrade the AOI's schema and tables", _init_db)
    cmd("migrate-partitions", "convert unpartitioned sigs/hists of an earlier version to partitioned "
        "tables (in place, no row copied)", _migrate)
    p = cmd("import-parcels", "import a parcel file into PostGIS and set the AOI row", _import_parcels)
    p.add_argument("--file", help="parcel file (default: parcels.source of the AOI)")
    p.add_argument("--layer", help="layer of the file (default: parcels.layer or the first)")
    p.add_argument("--aoi-wkt", help="AOI outline in EPSG:4326 WKT (default: parcel extent)")
    p.add_argument("--replace", action="store_true",
                   help="allow replacing a different parcel set that already has results")
    p = cmd("rasterize", "rasterize the parcels on the UTM grids of the AOI's S2 scenes", _rasterize)
    p.add_argument("--epsg", type=int, action="append", help="only this EPSG (repeatable)")
    p.add_argument("--resolution", type=float, action="append", help="only this resolution (m)")


def _init_db(args: argparse.Namespace, cfg: AoiConfig, url: str) -> None:
    ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)


def _migrate(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .db.partitions import migrate

    return migrate(url, cfg)


def _import_parcels(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .parcels import import_parcels

    return import_parcels(url, cfg, args.file, layer=args.layer, aoi_wkt=args.aoi_wkt,
                          replace=args.replace).__dict__


def _rasterize(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .grid.stored import rasterize_aoi

    return rasterize_aoi(url, cfg, epsgs=args.epsg, resolutions=args.resolution)


# --------------------------------------------------------------------------- harvest (docs/harvest.md)
def _harvest_commands(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    p = cmd("harvest", "harvest CARD scenes over the AOI into dias_catalogue", _harvest)
    _window_args(p)
    p.add_argument("--card", action="append", choices=list(CARD_STAGES),
                   help="card(s) to harvest (default: the AOI's cards)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the first request of each card's search and send nothing (no database writes)")
    cmd("harvest-log", "the latest harvests of the AOI (window, ok/failed, counts)", _harvest_log)
    p = cmd("completeness", "expected acquisitions (revisit pattern) vs harvested vs extracted", _completeness)
    _window_args(p)
    p.add_argument("--card", action="append", choices=list(CARD_STAGES), help="card(s) (default: the AOI's)")
    p.add_argument("--fail-above", type=float, metavar="PCT",
                   help="exit code 3 when a card misses more than PCT %% (default: completeness.fail_above_pct)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    p = cmd("order", "order the S1 CARD products missing over the AOI from the DIAS processing service", _order)
    _window_args(p)
    p.add_argument("--card", action="append", choices=["bs", "c6"], help="card(s) (default: ordering.cards)")
    p.add_argument("--dry-run", action="store_true", help="only list what would be ordered (no credentials needed)")
    p = cmd("order-status", "poll the open orders (with credentials) and list every order", _order_status)
    p.add_argument("--no-poll", action="store_true", help="only list what is recorded")


def _harvest(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .harvest import harvest
    from .runs import campaign_clip

    start, end = campaign_clip(cfg, args.start or dt.datetime.combine(cfg.start_date, dt.time()),
                               args.end or dt.datetime.now(dt.UTC).replace(tzinfo=None))
    if start is None or end is None:
        log.warning("harvest window %s..%s is outside the AOI's campaign %s..%s: nothing to harvest",
                    args.start, args.end, cfg.start_date, cfg.end_date)
        return {"skipped": "outside the campaign"}
    if args.dry_run:
        _harvest_dry_run(cfg, url, start, end, args.card or list(cfg.cards))
        return None
    ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
    return harvest(url, cfg, start, end, args.card).as_dict()


def _harvest_dry_run(cfg: AoiConfig, url: str, start: dt.datetime, end: dt.datetime, cards: list[str]) -> None:
    """Print what a harvest would send: per card, the first request of its search (later
    pages follow the service's next links; capped windows are split)."""
    import shapely

    from .harvest.catalogue import make_source

    if cfg.aoi_wkt:
        aoi = shapely.from_wkt(cfg.aoi_wkt)
    elif url:
        from .db import transaction
        from .harvest.catalogue import aoi_geometry

        with transaction(url) as conn:
            aoi = aoi_geometry(conn, cfg)
    else:
        raise ConfigError("a dry run needs the AOI outline: set aoi_wkt in the AOI file, or a database "
                          "with the AOI's row (CBM_DB_URL, after import-parcels)")
    source = make_source(cfg)
    print(f"# {cfg.name}: catalogue {source.name}, sensing window {start.isoformat()}..{end.isoformat()}")
    for card in cards:
        for line in source.describe(card, start, end, aoi):
            print(f"{card}: {line}")


def _harvest_log(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .harvest import harvest_history

    ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
    return harvest_history(url, cfg)


def _check_window(args: argparse.Namespace, cfg: AoiConfig, url: str) -> tuple[dt.datetime, dt.datetime]:
    ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
    return (args.start or dt.datetime.combine(cfg.start_date, dt.time()),
            args.end or dt.datetime.now(dt.UTC).replace(tzinfo=None))


def _completeness(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .harvest.completeness import completeness

    start, end = _check_window(args, cfg, url)
    rep = completeness(url, cfg, start, end, cards=args.card, fail_above_pct=args.fail_above)
    print(json.dumps(rep.as_dict(), indent=2, default=str) if args.json else rep.table())
    if rep.failed:
        log.error("%s", rep.failure_message())
        raise SystemExit(3)
    return None


def _order(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .harvest import ordering

    start, end = _check_window(args, cfg, url)
    client = None if args.dry_run else ordering.client_from_env(cfg)
    orep = ordering.run_ordering(url, cfg, start, end, client, dry_run=args.dry_run, cards=args.card)
    if orep.problems:
        print(json.dumps(orep.as_dict(), indent=2, default=str))
        for line in orep.problems:
            log.error("%s", line)
        raise SystemExit(3)
    return orep.as_dict()


def _order_status(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .harvest import ordering

    ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
    if not args.no_poll:
        ordering.poll(url, cfg, ordering.client_from_env(cfg), force=True)
    return ordering.order_status(url, cfg)


# --------------------------------------------------------------------------- extraction
def _extract_commands(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    p = cmd("extract", "claim and process pending scenes of a stage until none is left", _extract)
    p.add_argument("--stage", action="append", choices=list(STAGES),
                   help="stage(s) in order (default: all stages of the AOI, pipeline order)")
    p.add_argument("--start", type=_date, help="only scenes sensed from this time")
    p.add_argument("--end", type=_date, help="only scenes sensed before this time")
    p.add_argument("--limit", type=int, help="stop after this many scenes per stage")
    p.add_argument("--obsid", type=int, action="append", help="only these scenes (repeatable)")
    p.add_argument("--owner-label", default="",
                   help="stable caller name (e.g. the Airflow task instance); a rerun with the same "
                        "label takes over scenes its crashed predecessor still has leased")
    cmd("status", "scenes per card, stage and status", _status)
    cmd("cleanup", "requeue stuck and retryable-failed scenes (faulty-scene cleanup)", _cleanup)
    p = cmd("requeue", "re-run scenes: put their stages back in the queue", _requeue)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--obsid", type=int, action="append", help="scene id (repeatable)")
    g.add_argument("--all", action="store_true", help="every scene of the AOI (after a parcel-set replacement)")
    p.add_argument("--stage", action="append", choices=list(STAGES))
    p = cmd("release", "accept quarantined scene stages: lift the quality gate for them and extract them", _release)
    p.add_argument("--obsid", type=int, action="append", required=True)
    p.add_argument("--stage", action="append", choices=list(STAGES), help="only these stages (default: all)")
    p.add_argument("--no-extract", action="store_true", help="only put them back in the queue")


def _extract(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .extract import run_queue

    ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
    return {s: run_queue(url, cfg, s, start=args.start, end=args.end, limit=args.limit,
                         obsids=args.obsid, owner_label=args.owner_label)
            for s in (args.stage or cfg.stages)}


def _status(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .queue import status_counts

    return [dict(zip(("card", "stage", "status", "scenes"), r, strict=True)) for r in status_counts(url, cfg)]


def _cleanup(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .queue import cleanup

    return cleanup(url, cfg).__dict__


def _requeue(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .queue import requeue

    return {"requeued": requeue(url, cfg, None if args.all else args.obsid, args.stage)}


def _release(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
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


# --------------------------------------------------------------------------- maintenance and export
def _operations_commands(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    p = cmd("maintenance", "cloudy-sigs deletion (opt-in), VACUUM ANALYZE, CLUSTER, backup", _maintenance)
    p.add_argument("--delete-cloudy", action="store_true", help="force the opt-in deletion")
    p.add_argument("--no-cluster", action="store_true")
    p.add_argument("--backup-dir", help="pg_dump target (default: maintenance.backup_dir)")
    p = cmd("export", "write the canonical signatures of a year (Parquet or CSV) and the parcels (GeoParquet)",
            _export)
    p.add_argument("--year", type=int, required=True, choices=range(2014, 2101), metavar="YEAR",
                   help="calendar year of the sensing time (UTC)")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="signatures format")
    p.add_argument("--out-dir", help="target directory (default: maintenance.export_dir, else export/)")
    p = cmd("import-meteo", "import daily weather (CSV: date, tmin, tmax, tmean, prec and pid or cell) into the "
            "AOI's meteo table, served by the JRC route weatherTimeSeries", _import_meteo)
    p.add_argument("--file", required=True, help="CSV file (docs/analyst-api.md, Weather)")


def _maintenance(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .db.maintenance import run_maintenance

    return run_maintenance(url, cfg, delete_cloudy=args.delete_cloudy or None,
                           cluster=False if args.no_cluster else None, backup_dir=args.backup_dir)


def _export(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .analyst.export import export

    return export(url, cfg, args.year, args.format, args.out_dir)


def _import_meteo(args: argparse.Namespace, cfg: AoiConfig, url: str) -> Any:
    from .analyst.meteo import import_meteo

    ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
    return import_meteo(url, cfg, args.file)


# --------------------------------------------------------------------------- API users (no AOI, no database)
def _api_user_commands(sub: Any) -> None:
    p = sub.add_parser("api-user", help="users of the standalone parcel API (JRC users-file format)",
                       description="Add a user to a JRC-format users file (CBM_API_USERS_FILE), or print a hashed "
                                   "record for CBM_API_USERS. The password is read from the terminal, or from "
                                   "standard input with --password-stdin.")
    p.add_argument("action", choices=["add", "hash"], help="add: write to --file; hash: print name:pbkdf2_sha256$...")
    p.add_argument("name", help="user name (stored lower case)")
    p.add_argument("--file", help="users file (add; default CBM_API_USERS_FILE)")
    p.add_argument("--aoi", action="append", help="an AOI the user may read (repeatable; default: admin = all)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(run=None, no_aoi=_api_user)


def _api_user(args: argparse.Namespace) -> Any:
    import getpass
    import os

    from .users import new_user, save_user

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    user = new_user(args.name, password, tuple(a.lower() for a in args.aoi or ()) or ("admin",))
    if args.action == "hash":
        print(user.env_record())
        return None
    path = args.file or os.environ.get("CBM_API_USERS_FILE")
    if not path:
        raise ConfigError("api-user add: give --file or set CBM_API_USERS_FILE")
    save_user(path, user)
    return {"user": user.name, "aois": list(user.aois), "file": path}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import psycopg

    try:
        if getattr(args, "no_aoi", None):
            result = args.no_aoi(args)
        else:
            cfg = get_aoi(args.aoi)
            url = args.db_url or ("" if getattr(args, "dry_run", False) and cfg.aoi_wkt
                                  else db_url_from_env(cfg.db_conn_id))
            result = args.run(args, cfg, url)
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


if __name__ == "__main__":
    sys.exit(main())
