"""What the multi-host deployment exposes on its network: nothing without a password.

Every service a worker host reaches over the network (the api-server's REST, execution and
parcel APIs, the workers' log servers, Redis, both PostgreSQL clusters) refuses anonymous
access; the passwords are generated, non-empty, and every file holding one is mode 600.
"""

from __future__ import annotations

import json
import re
import socket
import stat

import psycopg
import pytest
import requests
from hosts import CONTROL, PORTS, WORKERS


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_secrets_are_non_empty_and_mode_600(stack):
    s = json.loads((stack.dir / "secrets.json").read_text())
    assert mode(stack.dir / "secrets.json") == 0o600
    for key in ("admin_password", "redis_password", "metadata_db_password", "results_db_password",
                "fernet_key", "jwt_secret", "api_secret_key"):
        assert len(s[key]) >= 16, key
    assert len({s[k] for k in s}) == len(s)                  # no value reused for another secret
    files = [stack.host_dir(CONTROL) / "passwords.json", stack.host_dir(CONTROL) / "redis" / "redis.conf",
             *(stack.host_dir(h) / "host.env" for h in (CONTROL, *WORKERS))]
    for f in files:
        assert mode(f) == 0o600, f
    for h in (CONTROL, *WORKERS):
        env = dict(line.split("=", 1) for line in (stack.host_dir(h) / "host.env").read_text().splitlines())
        urls = [v for k, v in env.items() if "://" in v and k != "AIRFLOW__API__BASE_URL"
                and not k.endswith("EXECUTION_API_SERVER_URL")]
        assert len(urls) >= 4, (h, sorted(env))              # metadata DB, result backend, broker, results DB
        for url in urls:
            pw = re.match(r"^[\w+]+://[^:/@]*:([^@]*)@", url)
            assert pw and len(pw.group(1)) >= 16, (h, url.split("@")[-1])


@pytest.mark.parametrize("path", ["/api/v2/dags", "/api/v2/monitor/health/../../dags", "/cbm/aois",
                                  "/cbm/query/parcelTimeSeries?aoi=hosts_clean&pid=1&tstype=s2",
                                  "/cbm/query/parcelById?aoi=hosts_clean&pid=1"])
def test_the_api_refuses_anonymous_requests(stack, path):
    r = requests.get(stack.url + path, timeout=30)
    assert r.status_code in (401, 403), (path, r.status_code, r.text[:200])


def test_the_api_answers_a_logged_in_analyst(stack, api):
    r = api.session.get(f"{stack.url}/cbm/query/parcelById", params={"aoi": "hosts_clean", "pid": 1}, timeout=30)
    assert r.status_code == 200 and r.json()["ogc_fid"] == [1], r.text[:300]


def test_worker_log_servers_refuse_requests_without_a_signed_token(stack):
    for w in WORKERS:
        r = requests.get(f"http://{stack.ip(w)}:{PORTS['worker_logs']}/log/dag_id=x/run_id=y/task_id=z/attempt=1.log",
                         timeout=30)
        assert r.status_code == 403, (w, r.status_code)


def test_redis_refuses_commands_without_the_password(stack):
    with socket.create_connection((stack.ip(CONTROL), PORTS["redis"]), timeout=5) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(128).startswith(b"-NOAUTH"), "Redis answered without a password"
        s.sendall(b"AUTH wrong-password\r\n")
        assert s.recv(128).startswith(b"-WRONGPASS")


@pytest.mark.parametrize("db", ["metadata", "results"])
def test_databases_refuse_logins_without_the_password(stack, db):
    pg = getattr(stack, db)
    for password in ("", "wrong-password"):
        url = f"postgresql://{pg.user}:{password}@{stack.ip(CONTROL)}:{pg.port}/{pg.dbname}"
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(url, connect_timeout=10).close()
    psycopg.connect(pg.url_at(stack.ip(CONTROL)), connect_timeout=10).close()
