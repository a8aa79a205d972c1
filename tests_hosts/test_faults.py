"""Faults of a multi-host deployment, each hitting a run mid-batch (see conftest.py).

Every scenario triggers the same window on its own AOI copy, injects one fault while an
extract batch runs, ends it, and asserts within 2 minutes of the fault's end: the run
succeeded, no stage is left ``inprogress`` or pending, and ``sigs``/``hists`` equal the
clean run's row for row (every column). The recovery time (fault end to equal rows and a
finished run) and the row comparison go to hosts-test-output/scenarios.json.

The tests run in file order and share the stack.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import psycopg
import pytest
from conftest import HEARTBEAT_TIMEOUT_S, STATE
from hosts import CONTROL, WORKERS

WINDOW = {"start": "2018-05-01", "end": "2018-06-01"}
START, END = dt.datetime(2018, 5, 1), dt.datetime(2018, 6, 1)
STAT_COLS = ("count", "mean", "std", "min", "max", "p25", "p50", "p75")
RECOVERY_LIMIT_S = 120.0
CLEAN: dict = {}


def rows(db, schema: str) -> tuple[set, set]:
    """sigs and hists rows of the window, keyed by scene reference (obsids differ per schema)."""
    sigs = set(db.execute(f"""SELECT d.reference, s.pid, trim(s.band), {', '.join('s.' + c for c in STAT_COLS)}
                              FROM {schema}.sigs s JOIN {schema}.dias_catalogue d ON d.id = s.obsid
                              WHERE d.obstime >= %s AND d.obstime < %s""", (START, END)))
    hists = set(db.execute(f"""SELECT d.reference, h.pid, h.hist::jsonb::text
                               FROM {schema}.hists h JOIN {schema}.dias_catalogue d ON d.id = h.obsid
                               WHERE d.obstime >= %s AND d.obstime < %s""", (START, END)))
    return sigs, hists


def stage_status(db, schema: str) -> dict[str, int]:
    return dict(db.execute(f"SELECT status, count(*) FROM {schema}.scene_stages GROUP BY 1"))


def trigger(api, schema: str) -> str:
    d = f"cbm_{schema}"
    api.patch(f"/dags/{d}", {"is_paused": False})
    return api.trigger(d, WINDOW)["dag_run_id"]


def mid_batch(db, schema: str, stage: str | None = None, timeout: float = 300) -> tuple[str, str]:
    """Wait until a stage has extracted scenes and one in progress: (stage, host holding it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute(f"""SELECT s.stage, s.lease_owner FROM {schema}.scene_stages s
                             WHERE s.status = 'inprogress' AND (%(st)s::text IS NULL OR s.stage = %(st)s)
                               AND EXISTS (SELECT 1 FROM {schema}.scene_stages x
                                           WHERE x.stage = s.stage AND x.status = 'extracted')
                             LIMIT 1""", {"st": stage}).fetchone()
        if row:
            host = re.search(r"@([^:]+):", row[1]).group(1)
            return row[0], host
        time.sleep(0.1)
    raise AssertionError(f"{schema}: no extract batch was caught running")


def recover(api, db, schema: str, rid: str, t_end: float, *, limit: float = RECOVERY_LIMIT_S) -> dict:
    """Wait for the run to end and the rows to equal the clean run's; the findings."""
    d = f"cbm_{schema}"
    deadline = t_end + limit + 60
    equal_at = ended_at = None
    run = None
    while time.monotonic() < deadline:
        run = api.get(f"/dags/{d}/dagRuns/{rid}")
        if run["state"] in ("success", "failed") and ended_at is None:
            ended_at = time.monotonic()
        if equal_at is None and rows(db, schema) == (CLEAN["sigs"], CLEAN["hists"]) and \
                "inprogress" not in stage_status(db, schema):
            equal_at = time.monotonic()
        if ended_at is not None:
            break
        time.sleep(2)
    sigs, hists = rows(db, schema)
    tis = api.task_instances(d, rid)
    out = {
        "run_state": run and run["state"],
        "run_ended_after_fault_s": round(ended_at - t_end, 1) if ended_at else None,
        "rows_equal_after_fault_s": round(equal_at - t_end, 1) if equal_at else None,
        "recovered_s": round(max(ended_at, equal_at) - t_end, 1) if ended_at and equal_at else None,
        "stage_status": stage_status(db, schema),
        "sigs_rows": {"fault_run": len(sigs), "clean_run": len(CLEAN["sigs"]), "only_fault": len(sigs - CLEAN["sigs"]),
                      "only_clean": len(CLEAN["sigs"] - sigs)},
        "hists_rows": {"fault_run": len(hists), "clean_run": len(CLEAN["hists"]),
                       "only_fault": len(hists - CLEAN["hists"]), "only_clean": len(CLEAN["hists"] - hists)},
        "failed_or_retried_tasks": sorted(f"{t['task_id']}[{t['map_index']}] try {t['try_number']} {t['state']} "
                                          f"on {t['hostname']}" for t in tis
                                          if t["try_number"] > 1 or t["state"] not in ("success", "skipped")),
    }
    return out


class Timeline:
    """Changes of a schema's scene_stages and of the workers' database sessions, polled
    every 0.25 s from its own connection while a scenario runs (kept in scenarios.json)."""

    def __init__(self, url: str, schema: str):
        import threading

        self.url, self.schema, self.events = url, schema, []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def mark(self, what: str) -> None:
        self.events.append((round(time.monotonic() - self.t0, 2), "test", what))

    def _run(self) -> None:
        import psycopg

        last_st: dict = {}
        last_sess: dict = {}
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    while not self._stop.is_set():
                        now = round(time.monotonic() - self.t0, 2)
                        st = {(r[0], r[1]): r[2:] for r in conn.execute(
                            f"SELECT obsid, stage, status, attempts, split_part(lease_owner, '@', 2) "
                            f"FROM {self.schema}.scene_stages")}
                        for k, v in st.items():
                            if last_st.get(k) != v and last_st:
                                self.events.append((now, f"{k[0]}/{k[1]}", " ".join(map(str, v))))
                        last_st = st
                        sess = {r[0]: r[1:] for r in conn.execute(
                            "SELECT pid, state, client_addr::text, left(query, 40) FROM pg_stat_activity "
                            "WHERE application_name = 'cbm-airflow worker'")}
                        for k in set(sess) | set(last_sess):
                            if sess.get(k) != last_sess.get(k):
                                self.events.append((now, f"session {k}", " ".join(map(str, sess.get(k) or ("gone",)))))
                        last_sess = sess
                        time.sleep(0.25)
            except Exception as exc:  # noqa: BLE001 - the server may be restarting
                self.events.append((round(time.monotonic() - self.t0, 2), "monitor", type(exc).__name__))
                time.sleep(0.5)

    def stop(self) -> list:
        self._stop.set()
        self._thread.join(timeout=5)
        return [" ".join(map(str, e)) for e in self.events]


def assert_recovered(out: dict, schema: str) -> None:
    assert out["run_state"] == "success", out
    assert set(out["stage_status"]) <= {"extracted", "No parcels"}, out["stage_status"]
    assert out["sigs_rows"]["only_fault"] == out["sigs_rows"]["only_clean"] == 0, out
    assert out["hists_rows"]["only_fault"] == out["hists_rows"]["only_clean"] == 0, out
    assert out["recovered_s"] is not None and out["recovered_s"] <= RECOVERY_LIMIT_S, out


def worker_ready(stack, name: str, since: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if " ready." in stack.component_log(name).read_bytes()[since:].decode(errors="replace"):
            return
        time.sleep(1)
    raise AssertionError(f"{name} did not come back")


# ----------------------------------------------------------------------------- the clean run
def test_0_clean_run_on_both_worker_hosts_with_logs_in_the_ui(stack, api, db, record):
    t0 = time.monotonic()
    rid = trigger(api, "hosts_clean")
    run = api.wait_run("cbm_hosts_clean", rid, timeout=400)
    assert run["state"] == "success", run
    CLEAN["sigs"], CLEAN["hists"] = rows(db, "hosts_clean")
    assert CLEAN["sigs"] and CLEAN["hists"]
    assert set(stage_status(db, "hosts_clean")) <= {"extracted", "No parcels"}
    tis = api.task_instances("cbm_hosts_clean", rid)
    hosts = {t["hostname"] for t in tis if t["state"] == "success"}
    assert hosts == set(WORKERS), hosts                        # every task ran on a worker host
    # a worker's task log opens through the api-server, which fetched it from the worker's
    # log server: the control host has no copy of it
    t = next(t for t in tis if t["task_id"] == "bs.extract")
    r = api.request("GET", f"/dags/cbm_hosts_clean/dagRuns/{rid}/taskInstances/bs.extract/logs/1",
                    params={"map_index": t["map_index"]}, headers={"Accept": "application/json"})
    assert r.status_code == 200
    events = [e.get("event", "") for e in r.json()["content"]]
    assert f"http://{t['hostname']}:8793/log/" in " ".join(events[:5]), events[:5]
    assert any(e.startswith("batch ") for e in events), events[:40]
    local = list((stack.host_dir(CONTROL) / "logs").rglob("task_id=bs.extract/*"))
    assert not local, local
    record("0_clean_run", {"wall_s": round(time.monotonic() - t0, 1), "sigs_rows": len(CLEAN["sigs"]),
                           "hists_rows": len(CLEAN["hists"]), "task_hosts": sorted(hosts),
                           "log_source": events[1] if len(events) > 1 else None})


# ----------------------------------------------------------------------------- faults
def test_1_worker_link_down_90s_mid_batch(stack, api, db, record):
    s = "hosts_link"
    tl = Timeline(stack.results_url_here, s)
    rid = trigger(api, s)
    stage, victim = mid_batch(db, s)
    stack.link(victim, up=False)
    tl.mark(f"link of {victim} down")
    t_down = time.monotonic()
    time.sleep(90)
    stack.link(victim, up=True)
    tl.mark(f"link of {victim} up")
    t_end = time.monotonic()
    out = recover(api, db, s, rid, t_end)
    record("1_link_down_90s", {"victim": victim, "stage": stage, "fault_s": round(t_end - t_down, 1), **out,
                               "timeline": tl.stop()})
    assert_recovered(out, s)


def test_2_worker_host_killed(stack, api, db, record):
    s = "hosts_kill"
    rid = trigger(api, s)
    stage, victim = mid_batch(db, s)
    killed = stack.kill_machine(victim)
    t_end = time.monotonic()
    out = recover(api, db, s, rid, t_end)
    record("2_worker_host_killed", {"victim": victim, "stage": stage, "killed_processes": len(killed),
                                    "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S, **out})
    since = stack.component_log(victim).stat().st_size
    stack.boot(victim)                                   # the host comes back for the next scenarios
    worker_ready(stack, victim, since)
    assert_recovered(out, s)


def test_3_redis_restarted(stack, api, db, record):
    s = "hosts_redis"
    rid = trigger(api, s)
    stage, victim = mid_batch(db, s)
    t0 = time.monotonic()
    stack.terminate("redis")
    stack.start_redis()
    t_end = time.monotonic()
    out = recover(api, db, s, rid, t_end)
    record("3_redis_restarted", {"stage": stage, "fault_s": round(t_end - t0, 1), **out})
    assert_recovered(out, s)


def test_4_scheduler_killed_and_restarted(stack, api, db, record):
    s = "hosts_sched"
    rid = trigger(api, s)
    stage, victim = mid_batch(db, s)
    since = stack.component_log("scheduler").stat().st_size
    t0 = time.monotonic()
    killed = stack.kill_component("scheduler")          # SIGKILL; its restart loop starts it again
    deadline = time.monotonic() + 60
    while "Starting the scheduler" not in stack.component_log("scheduler").read_bytes()[since:].decode(
            errors="replace"):
        assert time.monotonic() < deadline, "the scheduler did not come back"
        time.sleep(0.5)
    t_end = time.monotonic()
    out = recover(api, db, s, rid, t_end)
    record("4_scheduler_killed", {"stage": stage, "killed": killed, "fault_s": round(t_end - t0, 1), **out})
    assert_recovered(out, s)


def test_5_metadata_db_restarted(stack, api, db, record):
    s = "hosts_meta"
    rid = trigger(api, s)
    stage, victim = mid_batch(db, s)
    since = {n: stack.component_log(n).stat().st_size for n in ("scheduler", "dag-processor", "triggerer")}
    t0 = time.monotonic()
    stack.metadata.restart()
    t_end = time.monotonic()
    out = recover(api, db, s, rid, t_end)
    restarted = [n for n, k in since.items() if "[restart: always]" in stack.component_log(n).read_bytes()[k:].decode(
        errors="replace")]
    record("5_metadata_db_restarted", {"stage": stage, "fault_s": round(t_end - t0, 1),
                                       "components_restarted_by_their_loop": restarted, **out})
    assert_recovered(out, s)


def test_6_results_db_restarted_during_a_copy(stack, api, db, record):
    """The COPY of one bs scene is held on a key conflict (an uncommitted row of the test's
    with that scene's key) until PostgreSQL shows it waiting; then the server restarts.
    The AOI is harvested and its result partition created first (the CLI and the library,
    as an operator would), so the row is in place before the run's worker gets there."""
    from cbm_ops.cli import main as cli
    from cbm_ops.config import load_aoi
    from cbm_ops.db.partitions import ensure_partition

    s = "hosts_results"
    aoi = str(STATE / "aois" / f"{s}.yaml")
    url = stack.results_url_here
    for args in (["import-parcels"], ["harvest", "--start", WINDOW["start"], "--end", WINDOW["end"]]):
        assert cli([args[0], "--aoi", aoi, "--db-url", url, *args[1:]]) == 0
    obsid, ref = db.execute(f"""SELECT c.id, c.reference FROM {s}.dias_catalogue c
                                WHERE c.card = 'bs' AND c.obstime >= %s AND c.obstime < %s
                                ORDER BY c.obstime, c.id OFFSET 2 LIMIT 1""", (START, END)).fetchone()
    part = ensure_partition(url, load_aoi(aoi), obsid).sigs
    pid = next(r[1] for r in CLEAN["sigs"] if r[0] == ref)
    blocker = psycopg.connect(url)
    try:
        blocker.execute(f"INSERT INTO {s}.{part} (pid, obsid, band, count) VALUES (%s, %s, 'VVb', 1)", (pid, obsid))
        rid = trigger(api, s)
        deadline = time.monotonic() + 300
        copying = None
        while copying is None:
            assert time.monotonic() < deadline, "the COPY of the held scene never started"
            copying = db.execute(r"""SELECT pid, wait_event_type, substring(query from 'COPY [^(]*')
                                     FROM pg_stat_activity
                                     WHERE query ~ '^(--[^\n]*\n)*\s*COPY ' AND state = 'active'""").fetchone()
            time.sleep(0.1)
        t0 = time.monotonic()
        stack.results.restart()
        t_end = time.monotonic()
    finally:
        try:
            blocker.close()
        except Exception:  # noqa: BLE001 - the server was restarted under it
            pass
    out = recover(api, db, s, rid, t_end)
    record("6_results_db_restarted_during_copy", {"copy_seen": list(copying), "held_scene": ref,
                                                  "fault_s": round(t_end - t0, 1), **out})
    assert_recovered(out, s)


def _store(stack, up: bool) -> None:
    for w in WORKERS:
        if up:
            stack.in_host(w, "mount", "--bind", "-o", "ro", stack.store, str(STATE / "eodata"))
        else:
            stack.in_host(w, "umount", "-l", str(STATE / "eodata"))


def test_7_scene_store_unavailable_60s(stack, api, db, record):
    s = "hosts_store"
    rid = trigger(api, s)
    stage, victim = mid_batch(db, s)
    _store(stack, up=False)
    t0 = time.monotonic()
    time.sleep(60)
    _store(stack, up=True)
    t_end = time.monotonic()
    out = recover(api, db, s, rid, t_end)
    record("7_store_unavailable_60s", {"stage": stage, "fault_s": round(t_end - t0, 1), **out})
    assert_recovered(out, s)


def test_8_worker_scratch_full(stack, api, db, record):
    """A worker host's disk (its /tmp, AIRFLOW_HOME and task logs: a 256 MB tmpfs) is full
    for 30 s mid-batch. Airflow's task supervisor cannot write a task log there and fails
    the try (ENOSPC in the worker's own log); a retry after the disk is free succeeds. When
    every try of a task landed on the full host meanwhile (Celery gives retries to the free
    slot, often on that host), the run fails naming it, and what its batches did not do is
    still pending, nothing half written: then the operator's remedy, applied here at once
    when the fault ends: free the disk, clear the failed tasks with their downstream (UI:
    Clear, "Only failed" + "Downstream")."""
    s = "hosts_scratch"
    d = f"cbm_{s}"
    rid = trigger(api, s)
    stage, victim = mid_batch(db, s, stage="bs")
    since = stack.component_log(victim).stat().st_size
    fill = f"{stack.host_dir(victim)}/tmp/fill"
    res = stack.in_host(victim, "dd", "if=/dev/zero", f"of={fill}", "bs=1M", check=False)
    assert "No space left" in res.stderr, res.stderr
    df = stack.in_host(victim, "df", "-k", "/tmp").stdout.split("\n")[1].split()
    t0 = time.monotonic()
    time.sleep(30)
    stack.in_host(victim, "rm", "-f", fill)
    t_end = time.monotonic()
    run = api.wait_run(d, rid, timeout=300)
    tis = api.task_instances(d, rid)
    failed = sorted(f"{t['task_id']}[{t['map_index']}]" for t in tis if t["state"] == "failed")
    status = stage_status(db, s)
    named = {"run_state": run["state"], "failed_tasks": failed, "stage_status_before_remedy": status,
             "enospc_in_worker_log": "No space left on device" in stack.component_log(victim).read_bytes()[
                 since:].decode(errors="replace")}
    remedy = None
    if run["state"] == "failed":
        # the named outcome: the run failed naming its tasks, no scene in progress, no partial rows
        assert failed and "verdict[-1]" in failed, failed
        assert "inprogress" not in status and set(status) <= {"extracted", "No parcels", "ingested"}, status
        sigs, hists = rows(db, s)
        assert sigs <= CLEAN["sigs"] and hists <= CLEAN["hists"]            # what is there is right
        assert named["enospc_in_worker_log"]
        remedy = (f"free the disk of {victim}, then clear the failed tasks of the run with their downstream: "
                  f"airflow tasks clear {d} --only-failed --downstream -y (UI: Clear)")
        api.post(f"/dags/{d}/clearTaskInstances", {"dry_run": False, "dag_run_id": rid, "only_failed": True,
                                                    "include_downstream": True, "reset_dag_runs": True})
    out = recover(api, db, s, rid, t_end)
    record("8_worker_scratch_full", {"victim": victim, "stage": stage, "df_during": df,
                                     "fault_s": round(t_end - t0, 1), **named, "remedy": remedy, **out})
    assert_recovered(out, s)


@pytest.fixture(autouse=True)
def _timed(request, record):
    t0 = time.monotonic()
    yield
    record("wall_s_per_test", {request.node.name: round(time.monotonic() - t0, 1)})
