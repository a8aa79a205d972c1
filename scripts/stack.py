"""`make stack` / `make stack-stop`: a real Airflow 3.3 deployment on this host.

    python scripts/stack.py start [--state-dir DIR] [--results-url URL] [--aoi-dir DIR]
    python scripts/stack.py status
    python scripts/stack.py stop

The same deployment as docker-compose.yaml, from the project's virtualenv instead of
containers: CeleryExecutor with a Redis broker, a PostgreSQL metadata database, the
api-server (UI, REST API, execution API), scheduler, dag-processor, triggerer and two
Celery workers with distinct host names, plus the results PostGIS and the demo AOI.

* Settings: deploy/airflow.env (shared with docker-compose.yaml through env_file), plus
  what depends on this host: free ports, paths of this checkout, generated secrets.
* Metadata database and results PostGIS: throwaway clusters (cbm_ops.db.devdb) unless
  ``--results-url`` names an existing results database (the demo's).
* Redis: its own ``redis-server`` on a free port (no persistence).
* Init: ``airflow db migrate``, then scripts/compose-init.sh (pools, results schemas),
  the same script as the compose file's airflow-init.
* Login: SimpleAuthManager (the auth manager of Airflow core: the installed packages have
  no FAB provider), user ``admin`` with a generated password.
* Everything lives under the state directory (default ``stack-output/``): stack.json,
  secrets (mode 600), airflow-home, task logs, one log file per component. ``stop`` kills
  every process it started (process groups and their descendants: Airflow runs each task
  in its own process group) and removes the throwaway clusters.

Public interface (used by tests_stack/ and scripts/demo.py): :func:`start`, :func:`stop`,
:func:`load`, :class:`Stack` (``api`` client, ``env()``, ``airflow()``, ``kill_host()``),
:func:`settings`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cbm_ops.db.devdb import free_port  # noqa: E402  (the package, also without an install)

SETTINGS_FILE = ROOT / "deploy" / "airflow.env"
DEFAULT_STATE = ROOT / "stack-output"
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
WORKERS = ("worker1", "worker2")
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", *WORKERS)
USER = "admin"


class StackError(RuntimeError):
    """A component did not start, or the stack is not in the expected state."""


def settings(path: Path = SETTINGS_FILE) -> dict[str, str]:
    """The shared deployment settings of deploy/airflow.env (KEY=VALUE, no interpolation).

    Raises
    ------
    StackError
        If a line has no value (the file must stay valid for Compose's env_file).
    """
    from dotenv import dotenv_values

    values = dotenv_values(path, interpolate=False)
    empty = [k for k, v in values.items() if v is None]
    if empty:
        raise StackError(f"{path}: no value for {', '.join(empty)}")
    return {k: str(v) for k, v in values.items()}


@dataclass
class Stack:
    """A started stack, as recorded in ``<state_dir>/stack.json``."""

    state_dir: str
    ports: dict[str, int]
    metadata_db: dict[str, Any]
    results_db: dict[str, Any] | None          # a TempPostgis this stack owns, or None
    results_url: str
    aoi_dir: str
    overrides: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    started_at: str = ""

    # ------------------------------------------------------------------ paths, settings
    @property
    def dir(self) -> Path:
        return Path(self.state_dir)

    @property
    def home(self) -> Path:
        return self.dir / "airflow-home"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def url(self) -> str:
        """Base URL of the api-server (UI and REST API)."""
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def password(self) -> str:
        return self._secrets()["admin_password"]

    def _secrets(self) -> dict[str, str]:
        return json.loads((self.dir / "secrets.json").read_text())

    def env(self, component: str | None = None) -> dict[str, str]:
        """Environment of an Airflow component (or of a CLI call when ``component`` is None).

        deploy/airflow.env, then what depends on this host, then the stack's overrides
        (tests shorten timeouts with them).
        """
        s = self._secrets()
        md = f"{self.metadata_db['user']}@127.0.0.1:{self.metadata_db['port']}/{self.metadata_db['dbname']}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CBM_"))}
        env.update(settings())
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{md}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{md}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "AIRFLOW__CORE__FERNET_KEY": s["fernet_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": s["api_secret_key"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__BASE_URL": f"{self.url}/",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.dir / "passwords.json"),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.ports["scheduler_health"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.ports["triggerer_logs"]),
            "AIRFLOW_CONN_CBM_DB": self.results_url,
            "CBM_AOI_DIR": self.aoi_dir,
            "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]),
        })
        if component in WORKERS:
            # Two workers on one host: own log server port, own host name on task instances.
            env.update({
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports[f"{component}_logs"]),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "stack_hostname.hostname",
                "CBM_STACK_HOSTNAME": component,
                "PYTHONPATH": os.pathsep.join([str(ROOT / "deploy"), os.environ.get("PYTHONPATH", "")]).rstrip(
                    os.pathsep),
            })
        env.update(self.overrides)
        return env

    def airflow(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command against this stack (output captured)."""
        res = subprocess.run([AIRFLOW, *args], env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise StackError(f"airflow {' '.join(args[:3])} failed ({res.returncode}):\n"
                             f"{(res.stderr or res.stdout)[-3000:]}")
        return res

    # ------------------------------------------------------------------ processes
    def component_log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def spawn(self, name: str) -> int:
        port = self.ports["api"]
        conc = self.env(name)["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
        args = {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer"],
        }.get(name) or ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", conc]
        with open(self.component_log(name), "ab") as log:
            proc = subprocess.Popen([AIRFLOW, *args], env=self.env(name), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.dir, start_new_session=True)
        self.pids[name] = proc.pid
        return proc.pid

    def alive(self, name: str) -> bool:
        import psutil

        pid = self.pids.get(name)
        if not pid or not psutil.pid_exists(pid):
            return False
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def kill_host(self, name: str) -> list[int]:
        """SIGKILL a component and every process it started, as if its host died.

        The tree is frozen first (SIGSTOP) and collected again, so that no child escapes
        by being forked in between; Airflow's task processes run in their own process
        groups, so killing the component's group alone would leave them running.

        Returns
        -------
        list of int
            The pids killed.
        """
        import psutil

        pid = self.pids.get(name)
        if not pid:
            return []
        seen: dict[int, psutil.Process] = {}
        for _ in range(3):
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            new = [p for p in procs if p.pid not in seen]
            if not new and seen:
                break
            for p in new:
                seen[p.pid] = p
                try:
                    p.send_signal(signal.SIGSTOP)
                except psutil.NoSuchProcess:
                    pass
        for p in seen.values():
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(list(seen.values()), timeout=10)
        return sorted(seen)

    def terminate(self, name: str, timeout: float = 20) -> None:
        """Stop a component: SIGTERM to its process group and descendants, then SIGKILL."""
        import psutil

        pid = self.pids.get(name)
        if not pid:
            return
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for p in procs[1:]:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, left = psutil.wait_procs(procs, timeout=timeout)
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=5)

    def terminate_all(self, timeout: float = 20) -> None:
        """Stop every component at once (SIGTERM to all, SIGKILL to what is left), Redis last."""
        import psutil

        procs: list[psutil.Process] = []
        for name in self.pids:
            if name == "redis":
                continue
            try:
                root = psutil.Process(self.pids[name])
                procs += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, left = psutil.wait_procs(procs, timeout=timeout)
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=5)
        self.terminate("redis")

    def save(self) -> None:
        (self.dir / "stack.json").write_text(json.dumps(asdict(self), indent=2))

    # ------------------------------------------------------------------ REST API
    @property
    def api(self) -> Api:
        return Api(self.url, USER, self.password)

    def wait_ready(self, dag_ids: list[str], timeout: float = 300) -> None:
        """Wait until every component is up and the DAGs are parsed.

        Raises
        ------
        StackError
            With the tail of its log, if a component died, or on timeout.
        """
        import requests

        deadline = time.monotonic() + timeout
        want = set(dag_ids)
        state = "api-server"
        while True:
            for name in COMPONENTS:
                if not self.alive(name):
                    tail = self.component_log(name).read_text(errors="replace")[-4000:]
                    raise StackError(f"{name} died during start-up; last lines of {self.component_log(name)}:\n"
                                     f"{tail}")
            try:
                if state == "api-server":
                    requests.get(f"{self.url}/api/v2/version", timeout=5).raise_for_status()
                    state = "health"
                if state == "health":
                    h = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
                    down = [k for k in ("scheduler", "triggerer", "dag_processor")
                            if (h.get(k) or {}).get("status") != "healthy"]
                    if not down:
                        state = "workers"
                if state == "workers":
                    ready = [w for w in WORKERS if " ready." in self.component_log(w).read_text(errors="replace")]
                    if len(ready) == len(WORKERS):
                        state = "dags"
                if state == "dags":
                    have = {d["dag_id"] for d in self.api.get("/dags", params={"limit": 1000})["dags"]}
                    if want <= have:
                        return
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise StackError(f"the stack was not ready after {timeout:.0f} s (waiting for {state}); "
                                 f"logs in {self.dir}")
            time.sleep(1)


class Api:
    """Minimal client of the Airflow 3 REST API (``/api/v2``) with a token from /auth/token."""

    def __init__(self, url: str, username: str, password: str):
        import requests

        self.url = url
        self.session = requests.Session()
        self._login = (username, password)
        self._token_at = 0.0

    def token(self) -> str:
        r = self.session.post(f"{self.url}/auth/token", json={"username": self._login[0],
                                                             "password": self._login[1]}, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    def _auth(self) -> None:
        if time.monotonic() - self._token_at > 600:
            self.session.headers["Authorization"] = f"Bearer {self.token()}"
            self._token_at = time.monotonic()

    def request(self, method: str, path: str, **kw):
        self._auth()
        return self.session.request(method, f"{self.url}/api/v2{path}", timeout=60, **kw)

    def get(self, path: str, **kw) -> Any:
        r = self.request("GET", path, **kw)
        r.raise_for_status()
        return r.json()

    def patch(self, path: str, body: dict, **kw) -> Any:
        r = self.request("PATCH", path, json=body, **kw)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict, **kw) -> Any:
        r = self.request("POST", path, json=body, **kw)
        r.raise_for_status()
        return r.json()

    def trigger(self, dag_id: str, conf: dict, run_id: str | None = None) -> dict:
        """Trigger a run as the UI's Trigger form does (conf = the Params)."""
        body: dict[str, Any] = {"conf": conf, "logical_date": None}
        if run_id:
            body["dag_run_id"] = run_id
        return self.post(f"/dags/{dag_id}/dagRuns", body)

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> dict:
        """Wait for a run to end; returns the run (state success or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise StackError(f"run {dag_id}/{run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(2)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})["task_instances"]


# ---------------------------------------------------------------------- start / stop
def _new_secrets(path: Path) -> None:
    from cryptography.fernet import Fernet

    s = {"fernet_key": Fernet.generate_key().decode(), "jwt_secret": secrets.token_urlsafe(32),
         "api_secret_key": secrets.token_urlsafe(32), "admin_password": secrets.token_urlsafe(12)}
    path.write_text(json.dumps(s))
    path.chmod(0o600)


def load(state_dir: Path = DEFAULT_STATE) -> Stack | None:
    """The stack recorded in ``state_dir``, or None."""
    f = Path(state_dir) / "stack.json"
    return Stack(**json.loads(f.read_text())) if f.exists() else None


def _start_redis(stack: Stack) -> None:
    import shutil

    exe = shutil.which("redis-server")
    if exe is None:
        raise StackError("redis-server is not installed: run scripts/install-system-deps.sh")
    (stack.dir / "redis").mkdir(exist_ok=True)
    with open(stack.component_log("redis"), "ab") as log:
        proc = subprocess.Popen([exe, "--port", str(stack.ports["redis"]), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", str(stack.dir / "redis"),
                                 "--protected-mode", "yes"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    stack.pids["redis"] = proc.pid
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", stack.ports["redis"]), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.1)
    raise StackError(f"redis-server did not answer; see {stack.component_log('redis')}")


def start(state_dir: Path = DEFAULT_STATE, *, results_url: str | None = None, aoi_dir: Path | None = None,
          overrides: dict[str, str] | None = None, timeout: float = 300, quiet: bool = False) -> Stack:
    """Start the whole stack and wait until it is ready (see the module docstring).

    Parameters
    ----------
    state_dir : Path
        Directory of the state, logs and Airflow home; must not hold a running stack.
    results_url : str, optional
        Existing results database (``postgresql://``); default: a new throwaway PostGIS.
    aoi_dir : Path, optional
        AOI files (``CBM_AOI_DIR``); default include/aois.
    overrides : dict, optional
        Extra environment of every component (e.g. shorter timeouts in tests).

    Raises
    ------
    StackError
        If a stack is already recorded there, or a component fails to start (the
        partly started stack is stopped again).
    """
    from cbm_ops.config import load_all
    from cbm_ops.db.devdb import TempPostgis

    state_dir = Path(state_dir).resolve()
    if load(state_dir) is not None:
        raise StackError(f"a stack is already recorded in {state_dir}: `make stack-stop` first")
    state_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    aoi_dir = Path(aoi_dir or ROOT / "include" / "aois").resolve()
    t0 = time.monotonic()
    if not (state_dir / "secrets.json").exists():
        _new_secrets(state_dir / "secrets.json")
    ports = {k: free_port() for k in ("api", "redis", "scheduler_health", "triggerer_logs",
                                       *(f"{w}_logs" for w in WORKERS))}
    say("starting the metadata PostgreSQL ...")
    meta = TempPostgis.start(dbname="airflow")
    results = None
    stack = Stack(state_dir=str(state_dir), ports=ports, metadata_db=asdict(meta), results_db=None,
                  results_url=results_url or "", aoi_dir=str(aoi_dir), overrides=dict(overrides or {}),
                  started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    stack.save()
    try:
        if not results_url:
            say("starting the results PostGIS ...")
            results = TempPostgis.start(dbname="cbm")
            stack.results_db = asdict(results)
            stack.results_url = results.url
            stack.save()
        (state_dir / "passwords.json").write_text(json.dumps({USER: stack.password}))
        (state_dir / "passwords.json").chmod(0o600)
        stack.home.mkdir(exist_ok=True)
        stack.logs.mkdir(exist_ok=True)
        _start_redis(stack)
        stack.save()
        say("airflow db migrate ...")
        stack.airflow("db", "migrate")
        say("pools and results schemas (scripts/compose-init.sh) ...")
        res = subprocess.run([shutil.which("bash") or "/bin/bash", str(ROOT / "scripts" / "compose-init.sh")],
                             env=stack.env(),
                             capture_output=True, text=True, timeout=600)
        (state_dir / "init.log").write_text(res.stdout + res.stderr)
        if res.returncode != 0:
            raise StackError(f"compose-init.sh failed:\n{(res.stderr or res.stdout)[-3000:]}")
        for name in COMPONENTS:
            stack.spawn(name)
        stack.save()
        dag_ids = [f"cbm_{n}" for n in load_all(aoi_dir)]
        say(f"starting {', '.join(COMPONENTS)} ...")
        stack.wait_ready(dag_ids, timeout=timeout)
    except BaseException:
        stop(state_dir, quiet=True)
        raise
    say(f"stack ready in {time.monotonic() - t0:.0f} s")
    return stack


def stop(state_dir: Path = DEFAULT_STATE, *, quiet: bool = False) -> None:
    """Stop every process of the stack and remove its throwaway clusters."""
    from cbm_ops.db.devdb import TempPostgis

    stack = load(Path(state_dir))
    if stack is None:
        if not quiet:
            print(f"no stack recorded in {state_dir}")
        return
    stack.terminate_all()
    for db in (stack.results_db, stack.metadata_db):
        if db:
            TempPostgis(**db).stop()
    (stack.dir / "stack.json").unlink()
    if not quiet:
        print(f"stack stopped; logs kept in {stack.dir}")


def describe(stack: Stack) -> str:
    up = {n: stack.alive(n) for n in stack.pids}
    lines = [f"Airflow UI      {stack.url}/   (user {USER}, password {stack.password})",
             f"REST API        {stack.url}/api/v2   (token: POST {stack.url}/auth/token)",
             f"results DB      {stack.results_url}   (Airflow connection cbm_db)",
             f"AOI files       {stack.aoi_dir}",
             f"logs            {stack.dir}/<component>.log, task logs in {stack.logs}",
             "processes       " + ", ".join(f"{n} {'up' if ok else 'DOWN'} ({stack.pids[n]})" for n, ok in up.items()),
             "stop it with    make stack-stop"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["start", "stop", "status"])
    ap.add_argument("--state-dir", type=Path, default=Path(os.environ.get("CBM_STACK_DIR") or DEFAULT_STATE))
    ap.add_argument("--results-url", help="existing results database (default: a throwaway PostGIS)")
    ap.add_argument("--aoi-dir", type=Path, help="AOI files (default include/aois)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    try:
        if args.action == "start":
            existing = load(args.state_dir)
            if existing is not None and all(existing.alive(n) for n in COMPONENTS):
                print("the stack is already running:\n" + describe(existing))
                return 0
            if existing is not None:
                print("a stack is recorded but not every component is up: stopping it first")
                stop(args.state_dir, quiet=True)
            stack = start(args.state_dir, results_url=args.results_url, aoi_dir=args.aoi_dir)
            print(describe(stack))
        elif args.action == "stop":
            stop(args.state_dir)
        else:
            stack = load(args.state_dir)
            print(describe(stack) if stack else f"no stack recorded in {args.state_dir}")
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
