"""The operating modes of a real deployment: UI trigger with Params, schedule, backfill,
a dead worker, the extraction pool (CeleryExecutor, two workers; see conftest.py).

The tests run in file order and share the stack; each asserts on the values the DAG
runs leave in the results database and on what Airflow recorded (task instances, XCom).
"""

from __future__ import annotations

import datetime as dt
import json
import time

import psutil
import pytest
from conftest import AOIS, HEARTBEAT_TIMEOUT_S, POOL_SLOTS, WIDEN_DAYS

WINDOW = {"start": "2018-05-01", "end": "2018-06-01"}
STAT_COLS = "count, mean, std, min, max, p25, p50, p75"


def ts(s: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def unpause(api, dag_id: str) -> None:
    api.patch(f"/dags/{dag_id}", {"is_paused": False})


def xcom(api, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value"):
    r = api.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
                    params={"map_index": map_index})
    r.raise_for_status()
    v = r.json()["value"]
    return json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v


def extract_tis(api, dag_id: str, run_id: str) -> list[dict]:
    return sorted((t for t in api.task_instances(dag_id, run_id) if t["task_id"].endswith(".extract")
                   and t["map_index"] >= 0), key=lambda t: (t["task_id"], t["map_index"]))


def scenes_of(db, schema: str, obsids: list[int]) -> dict[int, dt.datetime]:
    return dict(db.execute(f"SELECT id, obstime FROM {schema}.dias_catalogue WHERE id = ANY(%s)", (obsids,)))


def window_scenes(db, schema: str, start: dt.datetime, end: dt.datetime) -> set[int]:
    return {r[0] for r in db.execute(f"SELECT id FROM {schema}.dias_catalogue WHERE obstime >= %s AND obstime < %s",
                                     (start, end))}


def extracted_obsids(api, dag_id: str, run_id: str) -> dict[str, set[int]]:
    """Scenes each stage's extract tasks processed (their XCom results), per stage."""
    out: dict[str, set[int]] = {}
    for t in extract_tis(api, dag_id, run_id):
        res = xcom(api, dag_id, run_id, t["task_id"], t["map_index"])
        out.setdefault(t["task_id"].split(".")[0], set()).update(r["obsid"] for r in res["results"])
    return out


# ----------------------------------------------------------------------------- scenario 1
def test_bad_date_is_refused_at_trigger_time(api):
    d = "cbm_stack_test"
    for conf in ({"start": "01/05/2018"}, {"start": "2018-05-01", "end": "2018-13-01"}):
        r = api.request("POST", f"/dags/{d}/dagRuns", json={"conf": conf, "logical_date": None})
        assert r.status_code == 400 and "date" in r.text, (r.status_code, r.text[:300])
    assert not [x for x in api.get(f"/dags/{d}/dagRuns")["dag_runs"] if x["run_type"] == "manual"]


def test_1_trigger_with_params_runs_on_both_workers(api, db, record):
    d = "cbm_stack_test"
    t0 = time.monotonic()
    unpause(api, d)                    # as the UI's Trigger form does (its "unpause" box is ticked)
    run = api.trigger(d, WINDOW)
    done = api.wait_run(d, run["dag_run_id"], timeout=400)
    wall = time.monotonic() - t0
    assert done["state"] == "success", done
    assert done["conf"] == WINDOW
    tis = extract_tis(api, d, run["dag_run_id"])
    hosts = {f"{t['task_id']}[{t['map_index']}]": t["hostname"] for t in tis}
    record("1_trigger_with_params", {"wall_s": round(wall, 1), "run_id": run["dag_run_id"],
                                      "extract_hosts": hosts, "labels": {f"{t['task_id']}[{t['map_index']}]":
                                                                         t["rendered_map_index"] for t in tis}})
    assert {t["task_id"] for t in tis} == {"scl.extract", "s2_10m.extract", "s2_20m.extract", "bs.extract"}
    assert set(hosts.values()) == {"worker1", "worker2"}, hosts        # the batches ran on both workers
    # every scene sensed in the window is extracted, no other, with all its stages
    start, end = dt.datetime(2018, 5, 1), dt.datetime(2018, 6, 1)
    by_stage = extracted_obsids(api, d, run["dag_run_id"])
    in_window = window_scenes(db, "stack_test", start, end)
    s2 = {i for i, in db.execute("SELECT id FROM stack_test.dias_catalogue WHERE card = 's2'")}
    assert by_stage["scl"] == by_stage["s2_10m"] == by_stage["s2_20m"] == in_window & s2
    assert by_stage["bs"] == in_window - s2 and by_stage["bs"]
    status = dict(db.execute("SELECT status, count(*) FROM stack_test.scene_stages GROUP BY 1"))
    assert set(status) <= {"extracted", "No parcels"}, status
    # map indexes are labelled with their batch, and each log opens with the batch
    for t in tis:
        batch = xcom(api, d, run["dag_run_id"], t["task_id"].replace(".extract", ".plan"))[t["map_index"]]
        assert t["rendered_map_index"] == batch["label"]
    t = tis[0]
    log = api.request("GET", f"/dags/{d}/dagRuns/{run['dag_run_id']}/taskInstances/{t['task_id']}/logs/1",
                      params={"map_index": t["map_index"]}, headers={"Accept": "application/json"})
    assert log.status_code == 200
    events = [e.get("event", "") for e in log.json()["content"]]
    assert any(e.startswith(f"batch {t['rendered_map_index']}: ") for e in events), events[:40]
    # the scheduled run that unpausing created (latest interval, after the AOI's campaign)
    # did nothing and said why
    sched = [x for x in api.get(f"/dags/{d}/dagRuns")["dag_runs"] if x["run_type"] == "scheduled"]
    assert len(sched) == 1
    s = api.wait_run(d, sched[0]["dag_run_id"], timeout=120)
    assert s["state"] == "success"
    assert not extract_tis(api, d, s["dag_run_id"])
    notes = xcom(api, d, s["dag_run_id"], "summary")["nothing_to_extract"]
    assert set(notes) == {"scl", "s2_10m", "s2_20m", "bs"} and all("end_date" in n for n in notes.values())
    record("1_trigger_with_params", {"unpause_run": s["dag_run_id"], "unpause_run_note": notes["scl"]})


def test_manual_run_says_why_it_extracts_nothing(api, db, record):
    d = "cbm_stack_test"
    run = api.trigger(d, {**WINDOW, "stages": ["bs"], "cards": ["bs"]})
    done = api.wait_run(d, run["dag_run_id"], timeout=300)
    assert done["state"] == "success"
    assert not extract_tis(api, d, run["dag_run_id"])
    note = xcom(api, d, run["dag_run_id"], "summary")["nothing_to_extract"]["bs"]
    n_bs = db.execute("""SELECT count(*) FROM stack_test.scene_stages WHERE stage = 'bs'
                         AND status = 'extracted'""").fetchone()[0]
    assert "no scene sensed in [2018-05-01 00:00, 2018-06-01 00:00)" in note and f"'extracted': {n_bs}" in note
    record("1_trigger_with_params", {"repeat_run_note": note})


# ----------------------------------------------------------------------------- scenario 5
def test_5_pool_bounds_concurrent_extract_tasks(api, record):
    d = "cbm_stack_test"
    assert api.get("/pools/cbm_extract")["slots"] == POOL_SLOTS
    run_id = [x for x in api.get(f"/dags/{d}/dagRuns")["dag_runs"] if x["conf"] == WINDOW][0]["dag_run_id"]
    tis = [t for t in api.task_instances(d, run_id) if t["pool"] == "cbm_extract" and t["start_date"]]
    events = sorted([(ts(t["start_date"]), 1) for t in tis] + [(ts(t["end_date"]), -1) for t in tis],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    workers_slots = 2 * 2
    record("5_pool", {"pool_slots": POOL_SLOTS, "worker_slots": workers_slots, "pool_tasks": len(tis),
                      "peak_concurrent_pool_tasks": peak})
    # more pool tasks than slots were ready at once (4-6 batches per stage) on 4 worker slots
    assert len([t for t in tis if t["task_id"] == "s2_10m.extract"]) > POOL_SLOTS
    assert peak == POOL_SLOTS


# ----------------------------------------------------------------------------- scenario 2
def test_2_unpause_runs_the_scheduled_interval_with_lookback(api, db, record):
    d = "cbm_stack_cont"
    t0 = time.monotonic()
    unpause(api, d)
    deadline = time.monotonic() + 120
    while not (runs := api.get(f"/dags/{d}/dagRuns")["dag_runs"]):
        assert time.monotonic() < deadline, "no scheduled run after unpausing"
        time.sleep(2)
    assert [r["run_type"] for r in runs] == ["scheduled"]
    done = api.wait_run(d, runs[0]["dag_run_id"], timeout=300)
    wall = time.monotonic() - t0
    api.patch(f"/dags/{d}", {"is_paused": True})
    assert done["state"] == "success"
    di = ts(done["data_interval_start"]), ts(done["data_interval_end"])
    assert di[1] - di[0] == dt.timedelta(days=1) and di[1].hour == 3 and di[1] <= dt.datetime.now(dt.UTC)
    setup = xcom(api, d, done["dag_run_id"], "setup")
    lookback = dt.timedelta(days=AOIS["stack_cont"]["lookback_days"])
    naive = [(x - lookback if i == 0 else x).replace(tzinfo=None).isoformat(sep=" ") for i, x in enumerate(di)]
    assert setup["windows"]["mode"] == "continuous"
    assert setup["windows"]["harvest"] == naive                          # interval plus the look-back
    assert setup["windows"]["extract"] == [None, None]                   # every pending scene
    harvest = xcom(api, d, done["dag_run_id"], "catalogue.harvest_s2")
    assert not harvest.get("skipped") and harvest["inserted"] == 0       # harvested; the sample ends in 2018
    # never harvested before: widened back over the uncovered time, bounded by max_widen_days
    widened = [(di[1] - dt.timedelta(days=WIDEN_DAYS)).replace(tzinfo=None).isoformat(sep=" "), naive[1]]
    assert harvest["window"] == widened and "max_widen_days" in (harvest["widened"] or ""), harvest
    assert db.execute("SELECT count(*) FROM stack_cont.dias_catalogue").fetchone()[0] == 0
    record("2_scheduled", {"wall_s": round(wall, 1), "run_id": done["dag_run_id"],
                           "data_interval": [str(x) for x in di], "harvest_window": naive,
                           "widened_window": widened, "widened_note": harvest["widened"]})


# ----------------------------------------------------------------------------- scenario 3
def test_3_backfill_two_intervals(stack, api, db, record):
    d = "cbm_stack_test"
    t0 = time.monotonic()
    stack.airflow("backfill", "create", "--dag-id", d, "--from-date", "2018-06-02", "--to-date", "2018-06-04",
                  "--max-active-runs", "2")
    deadline = time.monotonic() + 120
    while len(runs := [r for r in api.get(f"/dags/{d}/dagRuns")["dag_runs"] if r["run_type"] == "backfill"]) < 2:
        assert time.monotonic() < deadline, runs
        time.sleep(2)
    done = [api.wait_run(d, r["dag_run_id"], timeout=400) for r in runs]
    wall = time.monotonic() - t0
    assert [r["state"] for r in done] == ["success", "success"], done
    found = {}
    for r in done:
        start, end = ts(r["data_interval_start"]).replace(tzinfo=None), ts(r["data_interval_end"]).replace(tzinfo=None)
        by_stage = extracted_obsids(api, d, r["dag_run_id"])
        got = set().union(*by_stage.values()) if by_stage else set()
        expect = window_scenes(db, "stack_test", start, end)
        assert expect and got == expect, (start, end, got, expect)       # its own interval, all of it
        assert all(start <= t < end for t in scenes_of(db, "stack_test", sorted(got)).values())
        found[r["dag_run_id"]] = {"interval": [str(start), str(end)], "scenes": sorted(got)}
    starts = sorted(ts(r["start_date"]) for r in done)
    ends = sorted(ts(r["end_date"]) for r in done)
    record("3_backfill", {"wall_s": round(wall, 1), "runs": found, "runs_overlapped": starts[1] < ends[0]})


# ----------------------------------------------------------------------------- scenario 4
def rows(db, schema: str, start: dt.datetime, end: dt.datetime) -> tuple[set, set]:
    sigs = set(db.execute(f"""SELECT d.reference, s.pid, trim(s.band), {', '.join('s.' + c.strip()
                              for c in STAT_COLS.split(','))}
                              FROM {schema}.sigs s JOIN {schema}.dias_catalogue d ON d.id = s.obsid
                              WHERE d.obstime >= %s AND d.obstime < %s""", (start, end)))
    hists = set(db.execute(f"""SELECT d.reference, h.pid, h.hist::jsonb::text
                               FROM {schema}.hists h JOIN {schema}.dias_catalogue d ON d.id = h.obsid
                               WHERE d.obstime >= %s AND d.obstime < %s""", (start, end)))
    return sigs, hists


def test_4_killed_worker_host_the_run_still_succeeds_with_the_same_rows(stack, api, db, record):
    d = "cbm_stack_kill"
    t0 = time.monotonic()
    unpause(api, d)                                    # schedule null: no scheduled run
    run = api.trigger(d, WINDOW)
    rid = run["dag_run_id"]
    victim = owner = None
    deadline = time.monotonic() + 300
    while victim is None:                              # wait until a batch is half done
        assert time.monotonic() < deadline, "no extract batch was caught running"
        row = db.execute("""SELECT s.stage, s.lease_owner FROM stack_kill.scene_stages s
                            WHERE s.status = 'inprogress' AND EXISTS (
                              SELECT 1 FROM stack_kill.scene_stages x
                              WHERE x.stage = s.stage AND x.status = 'extracted')
                            LIMIT 1""").fetchone()
        if row:
            stage, owner = row
            pid = int(owner.rsplit("@", 1)[1].split(":")[1])
            for w in ("worker1", "worker2"):
                kids = {p.pid for p in psutil.Process(stack.pids[w]).children(recursive=True)}
                if pid in kids:
                    victim = w
        if victim is None:
            time.sleep(0.05)
    before = dict(db.execute("SELECT status, count(*) FROM stack_kill.scene_stages WHERE stage = %s GROUP BY 1",
                             (stage,)))
    killed = stack.kill_host(victim)
    t_kill = time.monotonic()
    assert not stack.alive(victim) and not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                               for p in killed)
    done = api.wait_run(d, rid, timeout=400)
    wall = time.monotonic() - t0
    assert done["state"] == "success", done
    tis = extract_tis(api, d, rid)
    retried = [t for t in tis if t["try_number"] > 1]
    task, index = owner.rsplit("@", 1)[0].split("/")[-2:]
    assert [t["task_id"] for t in retried if t["task_id"] == task], tis
    survivor = {"worker1": "worker2", "worker2": "worker1"}[victim]
    assert all(t["hostname"] == survivor for t in retried)
    tries = api.get(f"/dags/{d}/dagRuns/{rid}/taskInstances/{task}/{index}/tries")["task_instances"]
    by_try = {t["try_number"]: (t["hostname"], t["state"]) for t in tries}
    assert by_try[1] == (victim, "failed") and by_try[max(by_try)] == (survivor, "success"), by_try
    # nothing left in progress, and the rows equal those of the clean run of the same window
    stages = dict(db.execute("SELECT status, count(*) FROM stack_kill.scene_stages GROUP BY 1"))
    assert "inprogress" not in stages and set(stages) <= {"extracted", "No parcels"}, stages
    start, end = dt.datetime(2018, 5, 1), dt.datetime(2018, 6, 1)
    assert ({r[0] for r in db.execute("SELECT reference FROM stack_kill.dias_catalogue")}
            == {r[0] for r in db.execute("SELECT reference FROM stack_test.dias_catalogue WHERE obstime >= %s "
                                         "AND obstime < %s", (start, end))})
    sigs_k, hists_k = rows(db, "stack_kill", start, end)
    sigs_c, hists_c = rows(db, "stack_test", start, end)
    assert sigs_c and hists_c
    record("4_killed_worker", {
        "wall_s": round(wall, 1), "recovered_after_kill_s": round(time.monotonic() - t_kill, 1),
        "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S, "killed": victim, "killed_pids": killed,
        "killed_while": {"stage": stage, "lease_owner": owner, "stage_status_before_kill": before},
        "retried": {f"{t['task_id']}[{t['map_index']}]": {"try": t["try_number"], "host": t["hostname"]}
                    for t in retried},
        "killed_batch_tries": {n: {"host": h, "state": st} for n, (h, st) in sorted(by_try.items())},
        "extract_hosts": {f"{t['task_id']}[{t['map_index']}]": t["hostname"] for t in tis},
        "sigs_rows": {"killed_run": len(sigs_k), "clean_run": len(sigs_c), "only_killed": len(sigs_k - sigs_c),
                      "only_clean": len(sigs_c - sigs_k)},
        "hists_rows": {"killed_run": len(hists_k), "clean_run": len(hists_c),
                       "only_killed": len(hists_k - hists_c), "only_clean": len(hists_c - hists_k)},
        "stage_status_after": stages})
    assert sigs_k == sigs_c                       # every column, row for row (reference, pid, band)
    assert hists_k == hists_c


@pytest.fixture(autouse=True)
def _timed(request, record):
    t0 = time.monotonic()
    yield
    record("wall_s_per_test", {request.node.name: round(time.monotonic() - t0, 1)})
