"""Throwaway PostGIS cluster for tests, the demo and the benchmark.

Creates a PostgreSQL cluster with ``initdb`` in a temporary directory, starts it on a
free port of 127.0.0.1 (Unix socket in the same directory), creates a database with the
PostGIS extension and removes everything on :meth:`TempPostgis.stop`. Nothing here is
used in production: operators point cbm-airflow at their own PostGIS through an Airflow
Connection or ``CBM_DB_URL``.

When the process runs as root (CI containers), PostgreSQL refuses to start, so the
server commands run as the ``postgres`` system user through ``runuser``.

Command line::

    python -m cbm_ops.db.devdb start --state .devdb.json   # prints the database URL
    python -m cbm_ops.db.devdb stop --state .devdb.json
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SERVER_SETTINGS = (
    # Throwaway cluster: durability is irrelevant, speed matters.
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c max_connections=100 -c shared_buffers=256MB -c maintenance_work_mem=256MB "
    "-c max_wal_size=4GB -c checkpoint_timeout=30min"
)


def find_bindir() -> str:
    """Return the bin directory of the newest PostgreSQL server that has PostGIS.

    Returns
    -------
    str
        Directory containing ``initdb`` and ``pg_ctl``; ``PG_BINDIR`` overrides.

    Raises
    ------
    RuntimeError
        If no server with the PostGIS extension is installed
        (run ``scripts/install-system-deps.sh``).
    """
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: [int(x) for x in Path(p).parts[-3].split(".") if x.isdigit()])
    for initdb in reversed(candidates):
        major = Path(initdb).parts[-3]
        if glob.glob(f"/usr/share/postgresql/{major}/extension/postgis.control"):
            return str(Path(initdb).parent)
    raise RuntimeError("no PostgreSQL server with PostGIS found under /usr/lib/postgresql; "
                       "run scripts/install-system-deps.sh (or set PG_BINDIR)")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TempPostgis:
    """A running throwaway cluster (see module docstring)."""

    directory: str
    port: int
    bindir: str
    as_user: str | None
    dbname: str = "cbm"
    user: str = "cbm"

    @property
    def url(self) -> str:
        """``postgresql://`` URL of the database (trust authentication, no password)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def _run(self, *cmd: str) -> None:
        full = list(cmd)
        if self.as_user:
            full = ["runuser", "-u", self.as_user, "--", *full]
        res = subprocess.run(full, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({res.returncode}): "
                               f"{res.stderr.strip() or res.stdout.strip()}")

    @classmethod
    def start(cls, dbname: str = "cbm") -> TempPostgis:
        """Create, start and prepare a cluster.

        Returns
        -------
        TempPostgis
            The running cluster; call :meth:`stop` to remove it.

        Raises
        ------
        RuntimeError
            If initdb, the server or ``CREATE EXTENSION postgis`` fails.
        """
        bindir = find_bindir()
        directory = tempfile.mkdtemp(prefix="cbm-pg-")
        as_user = None
        if os.geteuid() == 0:
            as_user = "postgres"
            pw = pwd.getpwnam(as_user)
            os.chown(directory, pw.pw_uid, pw.pw_gid)
        pg = cls(directory=directory, port=free_port(), bindir=bindir, as_user=as_user,
                 dbname=dbname)
        data = os.path.join(directory, "data")
        try:
            pg._run(f"{bindir}/initdb", "-D", data, "-U", pg.user, "--auth=trust",
                    "-E", "UTF8", "--locale=C", "--no-sync")
            opts = f"-p {pg.port} -k {directory} -c listen_addresses=127.0.0.1 {SERVER_SETTINGS}"
            pg._run(f"{bindir}/pg_ctl", "-D", data, "-o", opts,
                    "-l", os.path.join(directory, "server.log"), "-w", "-t", "60", "start")
            psql = shutil.which("psql") or f"{bindir}/psql"
            base = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                    "-p", str(pg.port), "-U", pg.user]
            pg._run(*base, "-d", "postgres", "-c", f'CREATE DATABASE "{dbname}"')
            pg._run(*base, "-d", dbname, "-c", "CREATE EXTENSION IF NOT EXISTS postgis")
        except Exception:
            pg.stop()
            raise
        log.info("throwaway PostGIS on 127.0.0.1:%s (%s)", pg.port, directory)
        return pg

    def _ctl(self, *args: str) -> None:
        data = os.path.join(self.directory, "data")
        self._run(f"{self.bindir}/pg_ctl", "-D", data, *args)

    def server_stop(self) -> None:
        """Stop the server (fast shutdown: sessions are terminated), keep the cluster."""
        self._ctl("-m", "fast", "-w", "stop")

    def server_start(self) -> None:
        """Start the stopped server again with the options it was created with."""
        opts = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 {SERVER_SETTINGS}"
        self._ctl("-o", opts, "-l", os.path.join(self.directory, "server.log"), "-w", "-t", "60", "start")

    def restart(self) -> None:
        """Restart the server (what an operator or a crash-restart does to running clients)."""
        self.server_stop()
        self.server_start()

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        data = os.path.join(self.directory, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            try:
                self._run(f"{self.bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
            except RuntimeError as exc:  # still remove the directory
                log.warning("%s", exc)
        shutil.rmtree(self.directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cbm_ops.db.devdb",
                                 description="Start or stop a throwaway PostGIS cluster.")
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--state", default=".devdb.json",
                    help="file that records the running cluster (default: .devdb.json)")
    args = ap.parse_args(argv)
    state = Path(args.state)
    if args.action == "start":
        if state.exists():
            print(f"cluster already recorded in {state}; stop it first", file=sys.stderr)
            return 1
        pg = TempPostgis.start()
        state.write_text(json.dumps(asdict(pg)))
        print(pg.url)
        return 0
    if not state.exists():
        return 0
    TempPostgis(**json.loads(state.read_text())).stop()
    state.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
