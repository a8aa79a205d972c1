"""Static checks of the Docker Compose deployment (no Docker engine needed).

docker-compose.yaml, Dockerfile, .env.example and scripts/compose-init.sh are parsed and
checked against what the Airflow 3 components and the DAGs need; compose-init.sh is run
with stand-ins for ``airflow`` and ``python -m cbm_ops``. The compose file and the
one-host stack (scripts/stack.py, `make stack`) must be the same deployment: both take
their settings from deploy/airflow.env and set the same host-dependent keys.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
COMPOSE_TEXT = COMPOSE_FILE.read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)  # resolves the x-airflow-common anchors and << merges
SERVICES = COMPOSE["services"]

AIRFLOW_COMPONENTS = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                      "airflow-worker", "airflow-triggerer", "airflow-init"]
AIRFLOW_SERVICES = [*AIRFLOW_COMPONENTS, "airflow-cli", "flower"]
EXECUTION_API_URL = "http://airflow-apiserver:8080/execution/"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $${...} is escaped.
VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])[^}]*)?\}")
REF_ONLY_RE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}$")
SETTINGS_FILE = ROOT / "deploy" / "airflow.env"
SECRET_KEY_RE = re.compile(r"PASSWORD|SECRET|FERNET|JWT|TOKEN|_KEY$")
URL_CREDENTIALS_RE = re.compile(r"://[^:/@\s]*:([^@\s]*)@")


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def compose_vars() -> dict[str, bool]:
    """Variables the compose file interpolates -> whether every use has a default."""
    out: dict[str, bool] = {}
    for name, op in VAR_RE.findall(COMPOSE_TEXT):
        has_default = op in ("-", ":-", "+", ":+")
        out[name] = out.get(name, True) and has_default
    return out


def env_example() -> tuple[dict[str, str], set[str]]:
    """(variables set in .env.example, variables only mentioned in commented-out lines)."""
    values, commented = {}, set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^\s*(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m and m.group(1):
            commented.add(m.group(2))
        elif m:
            values[m.group(2)] = m.group(3)
    return values, commented


def aoi_pools() -> set[str]:
    pools = set()
    for f in sorted((ROOT / "include" / "aois").glob("*.y*ml")):
        pools.add((yaml.safe_load(f.read_text()) or {}).get("pool", "cbm_extract"))
    return pools


# ----------------------------------------------------------------------- services, images
def test_services_present():
    expected = {"postgres", "redis", "cbm-postgis", *AIRFLOW_SERVICES}
    assert expected <= set(SERVICES)
    assert SERVICES["airflow-cli"]["profiles"] == ["debug"]
    assert SERVICES["flower"]["profiles"] == ["flower"]
    for name in ["postgres", "redis", "cbm-postgis", *AIRFLOW_COMPONENTS]:
        assert "profiles" not in SERVICES[name], f"{name} must start with a plain `docker compose up`"


def test_images():
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert SERVICES["cbm-postgis"]["image"].startswith("postgis/postgis:")
    for name in AIRFLOW_SERVICES:
        svc = SERVICES[name]
        assert svc["build"] == ".", name
        assert svc["image"] == "${AIRFLOW_IMAGE_NAME:-cbm-airflow:latest}", name
        assert svc["env_file"] == [{"path": "deploy/airflow.env", "required": True},
                                   {"path": ".env", "required": False}], name


def test_commands():
    assert SERVICES["airflow-apiserver"]["command"] == "api-server"
    assert SERVICES["airflow-apiserver"]["ports"] == ["8080:8080"]
    assert SERVICES["airflow-scheduler"]["command"] == "scheduler"
    assert SERVICES["airflow-dag-processor"]["command"] == "dag-processor"
    assert SERVICES["airflow-worker"]["command"] == "celery worker"
    assert SERVICES["airflow-triggerer"]["command"] == "triggerer"
    assert SERVICES["flower"]["command"] == "celery flower"
    assert env("airflow-worker")["DUMB_INIT_SETSID"] == "0"


# ------------------------------------------------------------------------- environment
def test_components_share_jwt_secret_and_execution_api():
    secrets = {name: env(name).get("AIRFLOW__API_AUTH__JWT_SECRET") for name in AIRFLOW_SERVICES}
    assert len(set(secrets.values())) == 1, secrets
    jwt = secrets["airflow-apiserver"]
    assert jwt is not None and REF_ONLY_RE.match(jwt), jwt
    api_keys = {env(name).get("AIRFLOW__API__SECRET_KEY") for name in AIRFLOW_SERVICES}
    assert len(api_keys) == 1 and None not in api_keys
    for name in AIRFLOW_SERVICES:
        assert env(name)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == EXECUTION_API_URL, name


def test_celery_executor():
    assert settings()["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for name in AIRFLOW_SERVICES:
        e = env(name)
        assert e["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379/" in e[
            "AIRFLOW__CELERY__BROKER_URL"], name
        assert e["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://"), name
        assert "@postgres/airflow" in e["AIRFLOW__CELERY__RESULT_BACKEND"], name
        assert "@postgres/airflow" in e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name


def test_common_environment():
    expected = {
        "AIRFLOW__CORE__DAGS_FOLDER": "/opt/airflow/project/dags",
        "AIRFLOW__CORE__PLUGINS_FOLDER": "/opt/airflow/project/plugins",
        "CBM_AOI_DIR": "/opt/airflow/project/include/aois",
        "NUMBA_CACHE_DIR": "/opt/airflow/numba-cache",
    }
    s = settings()
    assert s["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False" and s["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "True"
    for name in AIRFLOW_SERVICES:
        e = env(name)
        for key, value in expected.items():
            assert e.get(key) == value, (name, key)
        assert REF_ONLY_RE.match(e["AIRFLOW__CORE__FERNET_KEY"]), name
        assert REF_ONLY_RE.match(e["AIRFLOW_CONN_CBM_DB"]), name
    # The paths the environment names exist in the project.
    assert (ROOT / "dags").is_dir() and (ROOT / "plugins").is_dir() and (ROOT / "include" / "aois").is_dir()


def test_volumes_mounted():
    for name in AIRFLOW_SERVICES:
        vols = SERVICES[name]["volumes"]
        targets = {v.split(":")[-2] if v.endswith((":ro", ":rw")) else v.split(":")[-1]: v for v in vols}
        assert targets["/opt/airflow/project"] == "${CBM_PROJECT_DIR:-.}:/opt/airflow/project", name
        assert "/opt/airflow/logs" in targets, name
        assert targets["/opt/airflow/numba-cache"] == "numba-cache:/opt/airflow/numba-cache", name
        assert targets["/eodata"] == "${EODATA_DIR:-/eodata}:/eodata:ro", name
    named = set(COMPOSE["volumes"])
    assert {"postgres-db-volume", "cbm-postgis-data", "numba-cache"} <= named
    assert any(v.startswith("cbm-postgis-data:") for v in SERVICES["cbm-postgis"]["volumes"])


def test_healthchecks():
    for name in ["postgres", "redis", "cbm-postgis", "airflow-apiserver", "airflow-scheduler"]:
        assert SERVICES[name].get("healthcheck", {}).get("test"), name
    assert "http://localhost:8080/api/v2/version" in SERVICES["airflow-apiserver"]["healthcheck"]["test"]
    assert "http://localhost:8974/health" in SERVICES["airflow-scheduler"]["healthcheck"]["test"]
    assert "pg_isready" in SERVICES["cbm-postgis"]["healthcheck"]["test"]


def test_start_order():
    init = SERVICES["airflow-init"]["depends_on"]
    for dep in ("postgres", "redis", "cbm-postgis"):
        assert init[dep]["condition"] == "service_healthy", dep
    for name in ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                 "airflow-triggerer", "flower"]:
        assert SERVICES[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name


def test_init_migrates_creates_admin_and_runs_compose_init():
    svc = SERVICES["airflow-init"]
    e = env("airflow-init")
    assert e["_AIRFLOW_DB_MIGRATE"] == "true" and e["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert REF_ONLY_RE.match(e["_AIRFLOW_WWW_USER_PASSWORD"])
    script = "\n".join(svc["command"]) if isinstance(svc["command"], list) else svc["command"]
    assert "/entrypoint bash /opt/airflow/project/scripts/compose-init.sh" in script


def test_cbm_postgis_password_from_env():
    e = env("cbm-postgis")
    assert REF_ONLY_RE.match(e["POSTGRES_PASSWORD"])
    assert REF_ONLY_RE.match(env("postgres")["POSTGRES_PASSWORD"])


# ----------------------------------------------------------------------------- secrets
def _walk_strings(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_strings(v, f"{path}[{i}]")
    elif node is not None:
        yield path, str(node)


def test_no_literal_secrets_in_compose():
    for path, value in _walk_strings(COMPOSE):
        key = path.rsplit(".", 1)[-1]
        if SECRET_KEY_RE.search(key) and value:
            assert REF_ONLY_RE.match(value), f"{path} must be a ${{VAR}} reference, not {value!r}"
        for pw in URL_CREDENTIALS_RE.findall(value):
            assert REF_ONLY_RE.match(pw), f"{path}: literal or empty password in URL"


def test_env_example_defines_compose_variables():
    values, commented = env_example()
    used = compose_vars()
    required = sorted(v for v, has_default in used.items() if not has_default)
    assert required, "expected required variables (secrets) in the compose file"
    for var in required:
        assert values.get(var), f".env.example must set {var} (no default in docker-compose.yaml)"
    for var in used:
        assert var in values or var in commented, f".env.example must document {var}"
    assert "AIRFLOW_CONN_CBM_S3" in values or "AIRFLOW_CONN_CBM_S3" in commented
    assert values["AIRFLOW_CONN_CBM_DB"].startswith("postgresql://cbm:")
    assert values["AIRFLOW_CONN_CBM_DB"].endswith("@cbm-postgis:5432/cbm")


def test_env_example_has_placeholders_only():
    values, _ = env_example()
    for var, value in values.items():
        if SECRET_KEY_RE.search(var) or var.startswith("AIRFLOW_CONN_"):
            secret = URL_CREDENTIALS_RE.findall(value) or [value]
            assert all(s.startswith("<") and s.endswith(">") for s in secret), f"{var}: use a <placeholder>"


# -------------------------------------------------------------------------- Dockerfile
def test_dockerfile():
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    text = "\n".join(lines)
    # the parcel viewer's page is built in a node stage; the image is Airflow's
    assert [ln for ln in lines if ln.startswith("FROM ")] == ["FROM node:20-bookworm-slim AS viewer",
                                                             "FROM apache/airflow:3.3.2-python3.11"]
    assert "RUN npm ci --no-audit --no-fund" in lines and "RUN npm run build" in lines
    assert "COPY --from=viewer --chown=airflow:0 /viewer/dist /opt/airflow/viewer-dist" in lines
    assert "ENV CBM_VIEWER_DIST=/opt/airflow/viewer-dist" in lines
    for pkg in ("gdal-bin", "libgdal-dev", "postgresql-client", "g++"):
        assert re.search(rf"apt-get install[^\n]*--no-install-recommends[^\n]*\s{re.escape(pkg)}(\s|$)", text), pkg
    assert "rm -rf /var/lib/apt/lists/*" in text
    req = text.index("pip install --no-cache-dir -r /requirements.txt")
    gdal = text.index('pip install --no-cache-dir --no-build-isolation "gdal==$(gdal-config --version)"')
    assert req < gdal, "the GDAL bindings need numpy (from requirements.txt) installed first"
    users = [ln for ln in lines if ln.startswith("USER ")]
    assert users[-1] == "USER airflow" and text.index("USER airflow") < req
    assert "NUMBA_CACHE_DIR=/opt/airflow/numba-cache" in text
    copy = text.index("COPY --chown=airflow:0 . /opt/airflow/project")
    # installed as a package, editable at the path where the compose file mounts the checkout
    assert text.index("pip install --no-cache-dir --no-deps -e /opt/airflow/project") > max(copy, gdal)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", ".env", "demo-output", "__pycache__", ".pytest_cache", ".hypothesis",
                  ".ruff_cache"):
        assert entry in ignored, entry


# ------------------------------------------------- one source of settings: compose and stack
def settings() -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: str(v) for k, v in dotenv_values(SETTINGS_FILE, interpolate=False).items()}


def test_settings_file_is_plain_env_file():
    lines = [ln for ln in SETTINGS_FILE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines
    for ln in lines:
        # what both Compose's env_file and python-dotenv read the same way
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s'\"$#]+", ln), ln
    s = settings()
    assert not [k for k in s if SECRET_KEY_RE.search(k)], "secrets do not belong in deploy/airflow.env"
    assert int(s["AIRFLOW__CELERY__WORKER_CONCURRENCY"]) >= 1 and int(s["CBM_POOL_SLOTS"]) >= 1
    assert int(s["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]) < 300


def test_compose_does_not_override_shared_settings():
    s = settings()
    for name in AIRFLOW_SERVICES:
        twice = set(env(name)) & set(s)
        assert not twice, f"{name} sets {twice} again: they belong to deploy/airflow.env only"


@pytest.fixture
def stack_env(tmp_path):
    """The environment scripts/stack.py gives its components (no process started)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import stack

    (tmp_path / "secrets.json").write_text(json.dumps({"fernet_key": "f", "jwt_secret": "j",
                                                       "api_secret_key": "a", "admin_password": "p"}))
    st = stack.Stack(state_dir=str(tmp_path), ports={k: 1000 + i for i, k in enumerate(
        ["api", "redis", "scheduler_health", "triggerer_logs", "worker1_logs", "worker2_logs"])},
        metadata_db={"user": "cbm", "port": 5999, "dbname": "airflow"}, results_db=None,
        results_url="postgresql://cbm@127.0.0.1:5998/cbm", aoi_dir=str(ROOT / "include" / "aois"))
    return {c: st.env(c) for c in stack.COMPONENTS}, stack


def test_stack_uses_the_same_settings_file(stack_env):
    envs, stack = stack_env
    assert stack.SETTINGS_FILE == SETTINGS_FILE
    s = settings()
    for component, e in envs.items():
        for k, v in s.items():
            assert e[k] == v, (component, k)
    # the same pools and schemas init as the compose file's airflow-init
    assert "compose-init.sh" in Path(stack.__file__).read_text()


# Keys only one of the two deployments sets, and why.
STACK_ONLY = {
    "AIRFLOW__API__BASE_URL",                  # the api-server's free port (compose: 8080, the default)
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",            # SimpleAuthManager (compose: FAB)
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",   # free ports on a shared host
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",       # under the state directory (compose: /opt/airflow/logs)
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",  # workers: two on one host
    "AIRFLOW__CORE__HOSTNAME_CALLABLE",
}
COMPOSE_ONLY: set[str] = set()


def test_compose_and_stack_set_the_same_keys(stack_env):
    envs, _ = stack_env
    compose_keys = {k for name in AIRFLOW_COMPONENTS for k in env(name)
                    if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "CBM_"))} - {"_AIRFLOW_DB_MIGRATE"}
    stack_keys = {k for e in envs.values() for k in e if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "CBM_"))}
    stack_keys -= set(settings())
    stack_keys -= {"CBM_STACK_HOSTNAME"}
    assert compose_keys - stack_keys == COMPOSE_ONLY
    assert stack_keys - compose_keys == STACK_ONLY
    for name in AIRFLOW_COMPONENTS:
        assert env(name)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith("/execution/")
    for component, e in envs.items():
        assert e["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:1000/execution/", component
        assert e["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:1001/0"
        assert e["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
        assert len({e["AIRFLOW__API_AUTH__JWT_SECRET"] for e in envs.values()}) == 1
    assert envs["worker1"]["CBM_STACK_HOSTNAME"] != envs["worker2"]["CBM_STACK_HOSTNAME"]
    assert envs["worker1"]["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] != \
        envs["worker2"]["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]


# ------------------------------------------------------------------------ compose-init.sh
def _fake_tools(tmp_path: Path, pool_exists: bool) -> tuple[Path, Path]:
    """``airflow`` and ``python`` stand-ins that log their arguments (python -m cbm_ops only)."""
    bindir, log = tmp_path / "bin", tmp_path / "calls.log"
    bindir.mkdir()
    (bindir / "airflow").write_text(
        "#!/usr/bin/env bash\n"
        f'echo "airflow $*" >> "{log}"\n'
        f'if [ "$1 $2" = "pools get" ]; then exit {0 if pool_exists else 1}; fi\n')
    (bindir / "python").write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1 $2" = "-m cbm_ops" ]; then echo "python $*" >> "{log}"; exit 0; fi\n'
        f'exec "{sys.executable}" "$@"\n')
    for f in bindir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    return bindir, log


def _run_init(tmp_path: Path, pool_exists: bool) -> tuple[subprocess.CompletedProcess, list[str]]:
    bindir, log = _fake_tools(tmp_path, pool_exists)
    sentinel = "s3cr3t-sentinel"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CBM_", "AIRFLOW_CONN_"))}
    environ.update(PATH=f"{bindir}{os.pathsep}{environ.get('PATH', '')}",
                   AIRFLOW_CONN_CBM_DB=f"postgresql://cbm:{sentinel}@cbm-postgis:5432/cbm",
                   CBM_POOL_SLOTS="7")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "compose-init.sh")], env=environ,
                          capture_output=True, text=True, timeout=120)
    assert sentinel not in proc.stdout + proc.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_compose_init_creates_pools_and_schemas(tmp_path):
    text = (ROOT / "scripts" / "compose-init.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    proc, calls = _run_init(tmp_path, pool_exists=False)
    assert proc.returncode == 0, proc.stderr
    pools = aoi_pools()
    assert pools
    for pool in pools:
        assert f"airflow pools set {pool} 7 cbm-airflow extraction" in calls, calls
    aois = sorted((ROOT / "include" / "aois").glob("*.y*ml"))
    assert aois
    for f in aois:
        assert f"python -m cbm_ops init-db --aoi {f}" in calls, calls
    assert "created pool" in proc.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_compose_init_keeps_existing_pool(tmp_path):
    proc, calls = _run_init(tmp_path, pool_exists=True)
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in calls if c.startswith("airflow pools set")], calls
    assert "exists" in proc.stdout


def test_redis_asks_for_a_password():
    """Worker hosts reach the broker over the network: no empty password (issue 20)."""
    cmd = SERVICES["redis"]["command"]
    pw = cmd[cmd.index("--requirepass") + 1]
    assert REF_ONLY_RE.match(pw), cmd
    for name in AIRFLOW_COMPONENTS:
        url = env(name)["AIRFLOW__CELERY__BROKER_URL"]
        assert URL_CREDENTIALS_RE.findall(url) == ["${REDIS_PASSWORD}"], url
    assert pw.startswith("${REDIS_PASSWORD:?"), pw          # Compose refuses to start without it
