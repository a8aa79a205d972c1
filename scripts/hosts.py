"""`make stack HOSTS=3` / `make stack-stop HOSTS=3`: the deployment on three hosts.

    python scripts/hosts.py start [--state-dir DIR] [--aoi-dir DIR]
    python scripts/hosts.py status
    python scripts/hosts.py stop

The deployment of scripts/stack.py (same settings, deploy/airflow.env), spread over three
hosts, each a Linux network namespace with its own address on a virtual network and its
own mount and UTS namespaces (own host name, /etc/hosts, /tmp, AIRFLOW_HOME, log folder):

* ``control`` (10.213.N.10): api-server, scheduler, dag-processor, triggerer, Redis, the
  metadata PostgreSQL and the results PostGIS, on the ports of docker-compose.yaml
  (8080, 6379, 5432, 5433);
* ``worker1``, ``worker2`` (.11, .12): one Celery worker each, with Airflow's worker log
  server on 8793 (the api-server fetches their task logs from there), and the scene store
  mounted read-only. Their disk (AIRFLOW_HOME, task logs, /tmp) is a small tmpfs of their own.

Every Airflow component runs under a restart loop (docker-compose's ``restart: always``).

The hosts are joined by veth pairs on a bridge; the bridge's own address (.1) is the
operator's machine (this process, the tests, a browser). The hosts have no route
elsewhere. Workers reach Redis, the databases and the execution API by the name
``control`` (their /etc/hosts), never over a loopback. Every service asks for a password:
generated ones in ``<state>/secrets.json`` (mode 600); each host gets its settings in
``<state>/hosts/<host>/host.env`` (mode 600), the file an operator would install on a VM
(docs/deployment.md, "Adding a worker VM").

A host is an anchor process (``sleep``) holding its namespaces; every component runs in
them through ``nsenter``. Killing a host kills every process in its network namespace.
The bridge side of a host's veth can be set down and up (a link failure).

Needs root (namespaces, bridge). Everything else as scripts/stack.py: :class:`HostsStack`
extends its :class:`stack.Stack`, the REST client and the readiness wait are the same.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack as stack_mod  # noqa: E402
from stack import ROOT, StackError  # noqa: E402

from cbm_ops.db.devdb import TempPostgis, find_bindir  # noqa: E402

DEFAULT_STATE = ROOT / "stack-output"
CONTROL = "control"
WORKERS = stack_mod.WORKERS                      # worker1, worker2: same names as the one-host stack
HOST_NAMES = (CONTROL, *WORKERS)
CONTROL_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
PORTS = {"api": 8080, "redis": 6379, "metadata_db": 5432, "results_db": 5433, "worker_logs": 8793,
         "scheduler_health": 8974, "triggerer_logs": 8794}
HOST_OCTET = {CONTROL: 10, "worker1": 11, "worker2": 12}
# A worker's local disk (AIRFLOW_HOME, task logs, /tmp): a tmpfs of this size, its own; the
# control host keeps its files (database clusters) in <state>/hosts/control.
DISK_SIZE = {CONTROL: "", "worker1": "256m", "worker2": "256m"}
IP = shutil.which("ip") or "/usr/sbin/ip"
NSENTER = [shutil.which("nsenter") or "/usr/bin/nsenter", "--net", "--mount", "--uts"]


# ---------------------------------------------------------------------------- network
@dataclass
class Net:
    """The virtual network: a bridge in this (root) namespace, one veth per host."""

    tag: str                        # short unique prefix of every interface and namespace name
    subnet: str                     # "10.213.N" (a /24)
    bridge: str

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def veth(self, host: str) -> str:
        """Bridge-side end of the host's link (at most 15 characters)."""
        return f"{self.tag}-{host[0]}{host[-1] if host[-1].isdigit() else ''}"

    def ip(self, host: str) -> str:
        return f"{self.subnet}.{HOST_OCTET[host]}"

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.1"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([IP, *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise StackError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def _used_subnets() -> set[str]:
    out = _ip("-o", "-4", "addr").stdout + _ip("-4", "route").stdout
    return {".".join(w.split(".")[:3]) for w in out.split() if w.count(".") == 3 and w.startswith("10.213.")}


def net_up() -> Net:
    """Create the bridge, the three namespaces and their links (addresses .1, .10-.12)."""
    if os.geteuid() != 0:
        raise StackError("the multi-host stack needs root (network and mount namespaces, a bridge)")
    used = _used_subnets()
    free = [n for n in range(16, 250) if f"10.213.{n}" not in used]
    if not free:
        raise StackError("no free 10.213.N.0/24 subnet")
    tag = f"cbh{secrets.token_hex(2)}"
    # the choice of a free subnet is no secret
    subnet = f"10.213.{random.choice(free)}"  # nosec B311
    net = Net(tag=tag, subnet=subnet, bridge=f"{tag}-br")
    try:
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)
        _ip("link", "set", net.bridge, "up")
        for h in HOST_NAMES:
            ns = net.ns(h)
            _ip("netns", "add", ns)
            _ip("link", "add", net.veth(h), "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", net.veth(h), "master", net.bridge, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{net.ip(h)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
    except BaseException:
        net_down(net)
        raise
    return net


def net_down(net: Net) -> None:
    """Remove the namespaces (their veth ends go with them) and the bridge."""
    for h in HOST_NAMES:
        _ip("netns", "del", net.ns(h), check=False)
        _ip("link", "del", net.veth(h), check=False)
    _ip("link", "del", net.bridge, check=False)


def ns_inode(ns: str) -> int:
    return os.stat(f"/run/netns/{ns}").st_ino


def pids_in(ns: str) -> list[int]:
    """Every process whose network namespace is ``ns`` (all processes of that host)."""
    ino = ns_inode(ns)
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}/ns/net").st_ino == ino:
                    out.append(int(d))
            except OSError:
                continue
    return out


# ---------------------------------------------------------------------------- databases
@dataclass
class HostPostgis(TempPostgis):
    """A PostgreSQL cluster of the control host (cbm_ops.db.devdb's, run in its namespaces).

    Listens on the host's address only, password (SCRAM) logins over TCP; the Unix socket
    in the cluster directory (private to the control host) trusts its local users.
    """

    anchor: int = 0
    listen: str = ""
    password: str = ""

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{CONTROL}:{self.port}/{self.dbname}"

    def url_at(self, host: str) -> str:
        """The URL with ``host`` (an address) instead of the name ``control``."""
        return f"postgresql://{self.user}:{self.password}@{host}:{self.port}/{self.dbname}"

    def _run(self, *cmd: str) -> None:
        full = [*NSENTER, "--target", str(self.anchor), "--", "runuser", "-u", self.as_user or "postgres", "--", *cmd]
        res = subprocess.run(full, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({res.returncode}): "
                               f"{res.stderr.strip() or res.stdout.strip()}")

    def _opts(self) -> str:
        from cbm_ops.db.devdb import SERVER_SETTINGS

        return f"-p {self.port} -k {self.directory} -c listen_addresses={self.listen} {SERVER_SETTINGS}"

    def server_start(self) -> None:
        self._ctl("-o", self._opts(), "-l", os.path.join(self.directory, "server.log"), "-w", "-t", "60", "start")

    @classmethod
    def create(cls, directory: Path, *, anchor: int, listen: str, subnet: str, port: int, user: str,
               dbname: str, password: str, postgis: bool) -> HostPostgis:
        import pwd
        import shutil

        directory.mkdir(parents=True, exist_ok=True)
        pw = pwd.getpwnam("postgres")
        os.chown(directory, pw.pw_uid, pw.pw_gid)
        pg = cls(directory=str(directory), port=port, bindir=find_bindir(), as_user="postgres", dbname=dbname,
                 user=user, anchor=anchor, listen=listen, password=password)
        pwfile = directory / "pw"
        pwfile.write_text(password + "\n")
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        pwfile.chmod(0o600)
        data = os.path.join(directory, "data")
        try:
            pg._run(f"{pg.bindir}/initdb", "-D", data, "-U", user, f"--pwfile={pwfile}", "--auth-local=trust",
                    "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
            pwfile.unlink()
            with open(os.path.join(data, "pg_hba.conf"), "a") as f:
                f.write(f"host all all {subnet}.0/24 scram-sha-256\n")
            pg.server_start()
            psql = shutil.which("psql") or f"{pg.bindir}/psql"
            base = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(directory), "-p", str(port), "-U", user]
            pg._run(*base, "-d", "postgres", "-c", f'CREATE DATABASE "{dbname}"')
            if postgis:
                pg._run(*base, "-d", dbname, "-c", "CREATE EXTENSION IF NOT EXISTS postgis")
        except Exception:
            pg.stop()
            raise
        return pg


# ---------------------------------------------------------------------------- hosts
def _outermost(paths: list[Path]) -> list[str]:
    """The resolved paths, leaving out those inside another of them."""
    res = sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts))
    out: list[Path] = []
    for p in res:
        if not any(p.is_relative_to(q) for q in out):
            out.append(p)
    return [str(p) for p in out]


HOST_SETUP = textwrap.dedent(r"""
    # The file system of one host (run by unshare in its new mount and UTS namespaces).
    set -euo pipefail
    hostname "$H_NAME"
    own="$H_STATE/hosts/$H_NAME"
    # staging outside /tmp, which this host replaces (the checkout itself may lie under /tmp)
    stage=$(mktemp -d -p /run cbm-host.XXXXXX 2>/dev/null || mktemp -d -p /var/tmp cbm-host.XXXXXX)
    mount -t tmpfs -o size=16m,mode=700 "cbm-$H_NAME-staging" "$stage"
    mkdir "$stage/own" "$stage/aois" "$stage/keep"
    if [ -n "$H_DISK_SIZE" ]; then
      # a worker's local disk: AIRFLOW_HOME, task logs and /tmp (its scratch space), this big
      mount -t tmpfs -o "size=$H_DISK_SIZE,mode=755" "cbm-$H_NAME-disk" "$stage/own"
    else
      mount --bind "$own" "$stage/own"
    fi
    mount --bind -o ro "$H_AOIS" "$stage/aois"
    if [ -n "$H_STORE" ]; then mkdir "$stage/store"; mount --bind -o ro "$H_STORE" "$stage/store"; fi
    mount --bind -o ro "$H_STATE/etc-hosts" /etc/hosts
    # hide the stack's state (other hosts' files, the operator's secrets) behind an empty tmpfs
    mount -t tmpfs -o size=1m,mode=755 "cbm-$H_NAME-hide" "$H_STATE"
    mkdir -p "$own" "$H_STATE/aois" "$H_STATE/eodata"
    mount --move "$stage/own" "$own"
    mount --move "$stage/aois" "$H_STATE/aois"
    if [ -n "$H_STORE" ]; then mount --move "$stage/store" "$H_STATE/eodata"; fi
    mount -o remount,ro "$H_STATE"
    mkdir -p "$own/tmp" "$own/airflow-home" "$own/logs"
    chmod 1777 "$own/tmp"
    # the host's own /tmp; the paths it runs from that lie under /tmp (H_KEEP: the checkout, the
    # state directory) are carried over into it at the same place, with their mounts
    IFS=: read -r -a keep <<< "${H_KEEP:-}"
    i=0
    for p in "${keep[@]}"; do
      case "$p" in /tmp/*) i=$((i + 1)); mkdir "$stage/keep/$i"; mount --rbind "$p" "$stage/keep/$i";; esac
    done
    mount --bind "$own/tmp" /tmp
    i=0
    for p in "${keep[@]}"; do
      case "$p" in /tmp/*) i=$((i + 1)); mkdir -p "$p"; mount --move "$stage/keep/$i" "$p";; esac
    done
    umount "$stage"
    rmdir "$stage"
    echo ready
    exec sleep infinity
""")


# docker-compose restarts every Airflow service that exits (`restart: always`), a VM's service
# manager does the same (systemd `Restart=always`): the scheduler, for one, exits when the
# metadata database restarts under it. Each component runs under this loop on its host.
# The api-server's processes on the control host (uvicorn workers of Airflow's api-server; size
# it to the host's cores). One here: two were measured no better on two shared cores (docs/deployment.md).
API_WORKERS = 1
# Worker hosts are separate VMs with their own cores in production; here the three hosts share
# this machine's cores, so the worker hosts' processes run at a lower CPU priority, standing in
# for CPUs of their own: their extraction does not take the control host's CPU from the analysts.
WORKER_NICE = 10

RESTART_LOOP = textwrap.dedent(r"""
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
    while :; do
      "$@" &
      child=$!
      wait "$child"
      echo "[restart: always] $* exited with status $?; starting it again in 5 s"
      sleep 5
    done
""")


@dataclass
class HostsStack(stack_mod.Stack):
    """A started multi-host stack, recorded in ``<state_dir>/stack.json``."""

    net: dict[str, str] = field(default_factory=dict)
    anchors: dict[str, int] = field(default_factory=dict)
    store: str = ""
    kind: str = "hosts"

    # ------------------------------------------------------------------ addressing
    @property
    def network(self) -> Net:
        return Net(**self.net)

    def ip(self, host: str) -> str:
        return self.network.ip(host)

    @property
    def url(self) -> str:
        return f"http://{self.ip(CONTROL)}:{PORTS['api']}"

    def host_of(self, component: str) -> str:
        return component if component in WORKERS else CONTROL

    def host_dir(self, host: str) -> Path:
        return self.dir / "hosts" / host

    @property
    def results(self) -> HostPostgis:
        assert self.results_db is not None
        return HostPostgis(**self.results_db)

    @property
    def metadata(self) -> HostPostgis:
        return HostPostgis(**self.metadata_db)

    @property
    def results_url_here(self) -> str:
        """The results database as the operator's machine (this process) reaches it."""
        return self.results.url_at(self.ip(CONTROL))

    # ------------------------------------------------------------------ settings
    def env(self, component: str | None = None) -> dict[str, str]:
        """Environment of a component: the one-host stack's, with the host's names and files.

        ``component`` None: an ``airflow`` CLI call on the control host.
        """
        s = self._secrets()
        host = self.host_of(component or "")
        env = super().env(None)
        home = self.host_dir(host)
        for k in ("AIRFLOW__CORE__HOSTNAME_CALLABLE", "CBM_STACK_HOSTNAME", "PYTHONPATH"):
            env.pop(k, None)
        md = self.metadata
        env.update({
            "AIRFLOW_HOME": str(home / "airflow-home"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                f"postgresql+psycopg2://{md.user}:{md.password}@{CONTROL}:{md.port}/{md.dbname}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{md.user}:{md.password}@{CONTROL}:{md.port}/{md.dbname}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://:{s['redis_password']}@{CONTROL}:{PORTS['redis']}/0",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{CONTROL}:{PORTS['api']}/execution/",
            "AIRFLOW__API__BASE_URL": f"{self.url}/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.host_dir(CONTROL) / "passwords.json"),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(PORTS["scheduler_health"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(PORTS["triggerer_logs"]),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(PORTS["worker_logs"]),
            "AIRFLOW_CONN_CBM_DB": self.results_url,
            "HOME": str(home),
        })
        # the host's own tmpfs, in its mount namespace
        env["TMPDIR"] = "/tmp"  # nosec B108
        if host != CONTROL:           # workers need no login file; keep it off their environment
            env.pop("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", None)
        env.update(self.overrides)
        return env

    def write_host_env(self, host: str) -> Path:
        """``<host dir>/host.env`` (mode 600): what a VM of this role needs besides
        deploy/airflow.env (the file docs/deployment.md installs on a worker VM)."""
        shared = stack_mod.settings()
        env = self.env(host if host != CONTROL else None)
        keep = {k: v for k, v in env.items() if k.startswith(("AIRFLOW", "CBM_"))
                and shared.get(k) != v}
        f = self.host_dir(host) / "host.env"
        f.touch(mode=0o600)
        f.chmod(0o600)
        f.write_text("".join(f"{k}={v}\n" for k, v in sorted(keep.items())))
        return f

    # ------------------------------------------------------------------ hosts and processes
    def start_host(self, host: str) -> int:
        """Boot a host: its anchor process in its namespaces, with its file system."""
        net = self.network
        self.host_dir(host).mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "H_NAME": host,
               "H_STATE": str(self.dir), "H_AOIS": self.aoi_dir, "H_DISK_SIZE": DISK_SIZE[host],
               "H_STORE": self.store if host in WORKERS else "",
               # what the host runs from (checkout with its venv, state, Python) stays visible under its own /tmp
               "H_KEEP": ":".join(_outermost([ROOT, self.dir, Path(sys.base_prefix)]))}
        log = open(self.component_log(f"host-{host}"), "ab")
        proc = subprocess.Popen([IP, "netns", "exec", net.ns(host), "unshare", "--mount", "--uts",
                                 "--propagation", "private", "bash", "-c", HOST_SETUP],
                                env=env, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        line = proc.stdout.readline() if proc.stdout else b""
        if line.strip() != b"ready":
            proc.kill()
            raise StackError(f"host {host} did not boot; see {self.component_log(f'host-{host}')}")
        self.anchors[host] = proc.pid
        self.save()
        return proc.pid

    def spawn(self, name: str) -> int:
        """Start a component in its host's namespaces (the one-host stack's command line)."""
        host = self.host_of(name)
        conc = self.env(name)["AIRFLOW__CELERY__WORKER_CONCURRENCY"]
        args = {
            "api-server": ["api-server", "--host", self.ip(CONTROL), "--port", str(PORTS["api"]),
                           "--workers", str(API_WORKERS)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer"],
        }.get(name) or ["celery", "worker", "--concurrency", conc]
        cwd = self.host_dir(host)
        with open(self.component_log(name), "ab") as log:
            proc = subprocess.Popen([*NSENTER, "--target", str(self.anchors[host]), "--wd=" + str(cwd), "--",
                                     shutil.which("bash") or "/bin/bash", "-c", RESTART_LOOP, "restart-always",
                                     *(["nice", "-n", str(WORKER_NICE)] if host in WORKERS else []),
                                     stack_mod.AIRFLOW, *args], env=self.env(name), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pids[name] = proc.pid
        return proc.pid

    def in_host(self, host: str, *cmd: str, env: dict[str, str] | None = None, check: bool = True,
                timeout: float = 600) -> subprocess.CompletedProcess:
        """Run a command on a host (its namespaces), output captured."""
        res = subprocess.run([*NSENTER, "--target", str(self.anchors[host]), "--", *cmd], env=env,
                             capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise StackError(f"on {host}: {' '.join(cmd[:3])} failed ({res.returncode}):\n"
                             f"{(res.stderr or res.stdout)[-3000:]}")
        return res

    def airflow(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """An ``airflow`` CLI command on the control host."""
        res = self.in_host(CONTROL, stack_mod.AIRFLOW, *args, env=self.env(), check=False, timeout=timeout)
        if check and res.returncode != 0:
            raise StackError(f"airflow {' '.join(args[:3])} failed ({res.returncode}):\n"
                             f"{(res.stderr or res.stdout)[-3000:]}")
        return res

    def start_redis(self) -> None:
        import shutil

        exe = shutil.which("redis-server")
        if exe is None:
            raise StackError("redis-server is not installed: run scripts/install-system-deps.sh")
        rdir = self.host_dir(CONTROL) / "redis"
        rdir.mkdir(exist_ok=True)
        conf = rdir / "redis.conf"            # the password stays out of the process list
        conf.touch(mode=0o600)
        conf.write_text(f"requirepass {self._secrets()['redis_password']}\n")
        with open(self.component_log("redis"), "ab") as log:
            proc = subprocess.Popen([*NSENTER, "--target", str(self.anchors[CONTROL]), "--", exe, str(conf),
                                     "--port", str(PORTS["redis"]), "--bind", self.ip(CONTROL),
                                     "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                                     "--dir", str(rdir), "--protected-mode", "yes"],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.pids["redis"] = proc.pid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._redis_ping():
                return
            time.sleep(0.2)
        raise StackError(f"redis-server did not answer; see {self.component_log('redis')}")

    def _redis_ping(self) -> bool:
        import socket

        try:
            with socket.create_connection((self.ip(CONTROL), PORTS["redis"]), timeout=1) as s:
                pw = self._secrets()["redis_password"]
                s.sendall(f"AUTH {pw}\r\nPING\r\n".encode())
                time.sleep(0.05)
                return b"+PONG" in s.recv(64)
        except OSError:
            return False

    def kill_machine(self, host: str) -> list[int]:
        """SIGKILL every process of a host (its network namespace), as if it lost power.

        Processes are frozen (SIGSTOP) and collected again until no new one appears, then
        killed. The host's anchor goes too: its mount namespace (/tmp) is gone; its
        network namespace and its directory (the VM's disk) stay for :meth:`boot`.
        """
        import psutil

        ns = self.network.ns(host)
        seen: set[int] = set()
        for _ in range(5):
            new = [p for p in pids_in(ns) if p not in seen]
            if not new:
                break
            for p in new:
                seen.add(p)
                try:
                    os.kill(p, signal.SIGSTOP)
                except ProcessLookupError:
                    pass
        for p in seen:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        procs = []
        for p in seen:
            try:
                procs.append(psutil.Process(p))
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        for name in list(self.pids):
            if self.host_of(name) == host and name != "redis" or (host == CONTROL and name == "redis"):
                self.pids.pop(name)
        self.anchors.pop(host, None)
        self.save()
        return sorted(seen)

    def boot(self, host: str) -> None:
        """Start a host again after :meth:`kill_machine`: its file system and its components."""
        self.start_host(host)
        for name in (CONTROL_COMPONENTS if host == CONTROL else (host,)):
            self.spawn(name)
        self.save()

    def link(self, host: str, up: bool) -> None:
        """Set the bridge side of a host's link down (no packet in or out) or up again."""
        _ip("link", "set", self.network.veth(host), "up" if up else "down")

    def kill_component(self, name: str) -> list[int]:
        """SIGKILL a component's processes (not its restart loop, which starts it again)."""
        import psutil

        try:
            kids = psutil.Process(self.pids[name]).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for p in kids:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(kids, timeout=10)
        return sorted(p.pid for p in kids)

    def terminate_all(self, timeout: float = 20) -> None:
        super().terminate_all(timeout)
        for host in HOST_NAMES:
            if host in self.anchors:
                self.kill_machine(host)


# ---------------------------------------------------------------------------- start / stop
def load(state_dir: Path = DEFAULT_STATE) -> HostsStack | None:
    f = Path(state_dir) / "stack.json"
    if not f.exists():
        return None
    data = json.loads(f.read_text())
    return HostsStack(**data) if data.get("kind") == "hosts" else None


def _new_secrets(path: Path) -> None:
    stack_mod._new_secrets(path)
    s = json.loads(path.read_text())
    s.update({k: secrets.token_hex(24) for k in ("redis_password", "metadata_db_password", "results_db_password")})
    path.write_text(json.dumps(s))
    path.chmod(0o600)


def start(state_dir: Path = DEFAULT_STATE, *, aoi_dir: Path | None = None, store: Path | None = None,
          overrides: dict[str, str] | None = None, timeout: float = 300, quiet: bool = False) -> HostsStack:
    """Start the three hosts and the deployment on them, wait until it is ready.

    Parameters
    ----------
    state_dir : Path
        State, host directories and component logs (must not hold a running stack).
    aoi_dir : Path, optional
        AOI files (``CBM_AOI_DIR``, mounted read-only on every host); default include/aois.
    store : Path, optional
        The scene store mounted read-only at ``<state_dir>/eodata`` on the workers
        (default include/sample/eodata); AOI files of this stack name that root.
    overrides : dict, optional
        Extra environment of every component (tests shorten timeouts with them).

    Raises
    ------
    StackError
        If a stack is recorded there, or something fails to start (what was started is
        stopped again).
    """
    from cbm_ops.config import load_all

    state_dir = Path(state_dir).resolve()
    if (state_dir / "stack.json").exists():
        raise StackError(f"a stack is already recorded in {state_dir}: `make stack-stop HOSTS=3` first")
    state_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    aoi_dir = Path(aoi_dir or ROOT / "include" / "aois").resolve()
    store = Path(store or ROOT / "include" / "sample" / "eodata").resolve()
    t0 = time.monotonic()
    if not (state_dir / "secrets.json").exists():
        _new_secrets(state_dir / "secrets.json")
    say("network: bridge, three namespaces ...")
    net = net_up()
    st = HostsStack(state_dir=str(state_dir), ports=dict(PORTS), metadata_db={}, results_db=None, results_url="",
                    aoi_dir=str(aoi_dir), overrides=dict(overrides or {}), net=asdict(net), store=str(store),
                    started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    st.save()
    try:
        (state_dir / "etc-hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost\n" + "".join(
            f"{net.ip(h)}\t{h}\n" for h in HOST_NAMES))
        for h in HOST_NAMES:
            st.start_host(h)
        sec = st._secrets()
        ctl = st.host_dir(CONTROL)
        say("control: metadata PostgreSQL and results PostGIS ...")
        meta = HostPostgis.create(ctl / "pg-metadata", anchor=st.anchors[CONTROL], listen=net.ip(CONTROL),
                                  subnet=net.subnet, port=PORTS["metadata_db"], user="airflow", dbname="airflow",
                                  password=sec["metadata_db_password"], postgis=False)
        st.metadata_db = asdict(meta)
        st.save()
        res = HostPostgis.create(ctl / "pg-results", anchor=st.anchors[CONTROL], listen=net.ip(CONTROL),
                                 subnet=net.subnet, port=PORTS["results_db"], user="cbm", dbname="cbm",
                                 password=sec["results_db_password"], postgis=True)
        st.results_db = asdict(res)
        st.results_url = res.url
        st.save()
        pwf = ctl / "passwords.json"
        pwf.touch(mode=0o600)
        pwf.write_text(json.dumps({stack_mod.USER: st.password}))
        for h in HOST_NAMES:
            (st.host_dir(h) / "airflow-home").mkdir(exist_ok=True)
            (st.host_dir(h) / "logs").mkdir(exist_ok=True)
            st.write_host_env(h)
        say("control: Redis ...")
        st.start_redis()
        st.save()
        say("control: airflow db migrate, compose-init.sh ...")
        st.airflow("db", "migrate")
        init = st.in_host(CONTROL, "bash", str(ROOT / "scripts" / "compose-init.sh"), env=st.env(), check=False)
        (state_dir / "init.log").write_text(init.stdout + init.stderr)
        if init.returncode != 0:
            raise StackError(f"compose-init.sh failed:\n{(init.stderr or init.stdout)[-3000:]}")
        for name in stack_mod.COMPONENTS:
            st.spawn(name)
        st.save()
        dag_ids = [f"cbm_{n}" for n in load_all(aoi_dir)]
        say(f"starting {', '.join(stack_mod.COMPONENTS)} on {', '.join(HOST_NAMES)} ...")
        st.wait_ready(dag_ids, timeout=timeout)
    except BaseException:
        stop(state_dir, quiet=True)
        raise
    say(f"stack ready in {time.monotonic() - t0:.0f} s")
    return st


def stop(state_dir: Path = DEFAULT_STATE, *, quiet: bool = False) -> None:
    """Stop every process of every host, remove the clusters, namespaces and bridge."""
    import shutil

    st = load(Path(state_dir))
    if st is None:
        if not quiet:
            print(f"no multi-host stack recorded in {state_dir}")
        return
    try:
        for name in list(st.pids):
            if name != "redis":
                st.terminate(name, timeout=15)
        st.terminate("redis")
        for db in (st.results_db, st.metadata_db):
            if db and CONTROL in st.anchors:
                try:
                    HostPostgis(**db).server_stop()
                except RuntimeError:
                    pass
        for h in HOST_NAMES:
            try:
                st.kill_machine(h)
            except FileNotFoundError:      # namespace already gone
                pass
    finally:
        net_down(st.network)
        for db in (st.results_db, st.metadata_db):
            if db:
                shutil.rmtree(db["directory"], ignore_errors=True)
        (st.dir / "stack.json").unlink(missing_ok=True)
    if not quiet:
        print(f"stack stopped; logs kept in {st.dir}")


def describe(st: HostsStack) -> str:
    up = {n: st.alive(n) for n in st.pids}
    lines = [f"Airflow UI      {st.url}/   (user {stack_mod.USER}, password in {st.dir}/secrets.json)",
             f"REST API        {st.url}/api/v2   (token: POST {st.url}/auth/token)",
             f"results DB      postgresql://cbm:***@{st.ip(CONTROL)}:{PORTS['results_db']}/cbm   (password in "
             f"secrets.json; Airflow connection cbm_db)",
             "hosts           " + ", ".join(f"{h} {st.ip(h)} (netns {st.network.ns(h)})" for h in HOST_NAMES),
             f"host settings   {st.dir}/hosts/<host>/host.env (mode 600)",
             f"logs            {st.dir}/<component>.log, task logs on each worker host",
             "processes       " + ", ".join(f"{n} {'up' if ok else 'DOWN'} ({st.pids[n]})" for n, ok in up.items()),
             "stop it with    make stack-stop HOSTS=3"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["start", "stop", "status"])
    ap.add_argument("--state-dir", type=Path, default=Path(os.environ.get("CBM_STACK_DIR") or DEFAULT_STATE))
    ap.add_argument("--aoi-dir", type=Path, help="AOI files (default include/aois)")
    args = ap.parse_args(argv)
    try:
        if args.action == "start":
            existing = load(args.state_dir)
            if existing is not None and all(existing.alive(n) for n in stack_mod.COMPONENTS):
                print("the stack is already running:\n" + describe(existing))
                return 0
            if existing is not None:
                print("a stack is recorded but not every component is up: stopping it first")
                stop(args.state_dir, quiet=True)
            st = start(args.state_dir, aoi_dir=args.aoi_dir)
            print(describe(st))
        elif args.action == "stop":
            stop(args.state_dir)
        else:
            st = load(args.state_dir)
            print(describe(st) if st else f"no multi-host stack recorded in {args.state_dir}")
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
