"""Scene queue: atomic claims across processes, leases, failures, cleanup, status summary."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import signal
import time

import psycopg
import pytest
from synthetic import set_aoi

from cbm_ops import queue
from cbm_ops.config import AoiConfig
from cbm_ops.db import transaction
from cbm_ops.db.partitions import ensure_partition
from cbm_ops.harvest import HarvestReport, SceneRecord, upsert

AOI_WKT = "POLYGON((2.9 50.4, 4.5 50.4, 4.5 51.4, 2.9 51.4, 2.9 50.4))"
FOOTPRINT = "MULTIPOLYGON(((2.9 50.4, 4.5 50.4, 4.5 51.4, 2.9 51.4, 2.9 50.4)))"


def make_cfg(schema: str, **kw) -> AoiConfig:
    kw.setdefault("cards", ("s2", "bs"))
    return AoiConfig(name="q", schema=schema, start_date=dt.date(2024, 1, 1), **kw)


def seed(url: str, cfg: AoiConfig, n_s2: int, n_bs: int = 0) -> None:
    """SYNTHETIC catalogue rows (real naming scheme) queued for every stage."""
    set_aoi(url, cfg, AOI_WKT)
    recs = []
    base = dt.datetime(2024, 1, 1, 10, 56, 21)
    for i in range(n_s2):
        t = base + dt.timedelta(days=i)
        ref = f"S2A_MSIL2A_{t:%Y%m%dT%H%M%S}_N0510_R051_T31UDS_{t:%Y%m%d}T140000"
        recs.append(SceneRecord(
            reference=ref, obstime=t, sensor="2A", card="s2", footprint_wkt=FOOTPRINT,
            tile="31UDS", epsg=32631, relative_orbit=51, orbit_direction="DESCENDING",
            processing_baseline="05.10", cloud_cover=1.0, product_identifier="/eodata/x", catalogue_id=None,
            source="test"))
    for i in range(n_bs):
        t = base + dt.timedelta(days=i, hours=7)
        ref = f"S1A_IW_GRDH_1SDV_{t:%Y%m%dT%H%M%S}_{t:%Y%m%dT%H%M%S}_052000_06{i:04X}_ABCD_CARD_BS"
        recs.append(SceneRecord(
            reference=ref, obstime=t, sensor="1A", card="bs", footprint_wkt=FOOTPRINT,
            tile=None, epsg=32631, relative_orbit=88, orbit_direction="ASCENDING", processing_baseline=None,
            cloud_cover=None, product_identifier="/eodata/y", catalogue_id=None, source="test"))
    report = HarvestReport()
    with transaction(url) as conn:
        ids = upsert(conn, cfg.schema, recs, report)
        queue.enqueue(conn, cfg)
    assert report.inserted == n_s2 + n_bs, report.errors
    for obsid in ids:                     # result partitions (extraction creates them on demand)
        ensure_partition(url, cfg, obsid)


def stage_status(url, schema, stage):
    with psycopg.connect(url) as c:
        return dict(c.execute(f'SELECT obsid, status FROM "{schema}".scene_stages WHERE stage = %s', (stage,)))


def catalogue_status(url, schema):
    with psycopg.connect(url) as c:
        return dict(c.execute(f'SELECT status, count(*) FROM "{schema}".dias_catalogue GROUP BY 1'))


def test_claim_order_dependency_and_summary(db_url, db_schema):
    cfg = make_cfg(db_schema)
    seed(db_url, cfg, n_s2=3, n_bs=2)
    owner = queue.new_owner("t")
    with transaction(db_url) as conn:
        # 10 m needs the SCL stage extracted first: nothing to claim yet.
        assert queue.claim(conn, cfg, "s2_10m", owner, n=5) == []
        claims = queue.claim(conn, cfg, "scl", owner, n=2)
    assert [c.obstime.day for c in claims] == [1, 2]          # oldest first
    assert catalogue_status(db_url, db_schema) == {"inprogress": 2, "ingested": 3}
    with transaction(db_url) as conn:
        queue.complete(conn, cfg, claims[0], owner, parcels=5, rows=5, seconds=0.1)
        queue.complete(conn, cfg, claims[1], owner, status=queue.NO_PARCELS)
    s10 = stage_status(db_url, db_schema, "s2_10m")
    assert s10[claims[1].obsid] == "No parcels" and s10[claims[0].obsid] == "ingested"
    with transaction(db_url) as conn:
        got = queue.claim(conn, cfg, "s2_10m", owner, n=5)
    assert [c.obsid for c in got] == [claims[0].obsid]         # only the scene with parcels
    summary = catalogue_status(db_url, db_schema)
    assert summary == {"inprogress": 1, "No parcels": 1, "ingested": 3}


def _claimer(url: str, schema: str, out, delay: float) -> None:
    cfg = make_cfg(schema)
    owner = queue.new_owner(f"p{os.getpid()}")
    session = queue.Session(url)              # as run_queue: claims and writes on its own session
    got = []
    while True:
        with session.tx() as conn:
            claims = queue.claim(conn, cfg, "scl", owner, n=1)
        if not claims:
            break
        time.sleep(delay)                 # widen the race window
        with session.tx() as conn:
            queue.complete(conn, cfg, claims[0], owner, rows=1)
        with session.tx() as conn:
            queue.unlock(conn, cfg, claims[0])
        got.append(claims[0].obsid)
    session.close()
    out.put(got)


def test_concurrent_claimers_never_share_a_scene(db_url, db_schema):
    cfg = make_cfg(db_schema)
    seed(db_url, cfg, n_s2=60)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(db_url, db_schema, out, 0.01)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    flat = [o for r in results for o in r]
    assert len(flat) == len(set(flat)) == 60                  # each scene exactly once
    assert sum(1 for r in results if r) >= 2                  # the work really was shared
    assert set(stage_status(db_url, db_schema, "scl").values()) == {"extracted"}
    with psycopg.connect(db_url) as c:
        assert c.execute(f'SELECT max(attempts) FROM "{db_schema}".scene_stages WHERE stage = %s',
                         ("scl",)).fetchone()[0] == 1


def _claim_many_and_hold(url: str, schema: str, k: int, out, go) -> None:
    """Claim up to 150 scenes one by one on an own session, keep them all (no completion)."""
    cfg = make_cfg(schema)
    session = queue.Session(url)
    owner = queue.new_owner(f"w{k}")
    go.wait()
    got = []
    t_end = time.monotonic() + 30
    while time.monotonic() < t_end and len(got) < 150:
        with session.tx() as conn:
            claims = queue.claim(conn, cfg, "bs", owner, n=1)
        if not claims:
            break
        got.append((claims[0].obsid, claims[0].attempts))
    out.put(got)
    time.sleep(3)                              # alive, holding every claim, while the others go on
    session.close()


def test_live_claimers_never_take_each_others_scenes(db_url, db_schema):
    """A scene claimed (and committed) by one worker while another's claim statement was
    already running must not pass the other's holder test (pg_locks read once per
    statement): 4 workers holding their claims on a large queue, every scene once."""
    cfg = make_cfg(db_schema)
    seed(db_url, cfg, n_s2=0, n_bs=1)
    with psycopg.connect(db_url) as c:            # SYNTHETIC queue of 20,000 S1 scenes
        c.execute(f"""INSERT INTO "{db_schema}".dias_catalogue (obstime, reference, sensor, card, epsg,
                          product_identifier)
                      SELECT timestamp '2024-02-01' + g * interval '1 minute', 'S1A_SYNTHETIC_' || g, '1A', 'bs',
                             32631, '/eodata/y' FROM generate_series(1, 20000) g""")
        c.execute(f'INSERT INTO "{db_schema}".scene_stages (obsid, stage) '
                  f'SELECT id, %s FROM "{db_schema}".dias_catalogue ON CONFLICT DO NOTHING', ("bs",))
        c.execute(f'ANALYZE "{db_schema}".scene_stages')
        c.execute(f'ANALYZE "{db_schema}".dias_catalogue')
    ctx = mp.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_claim_many_and_hold, args=(db_url, db_schema, k, out, go)) for k in range(4)]
    for p in procs:
        p.start()
    time.sleep(3)
    go.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    flat = [o for r in results for o, _ in r]
    assert len(flat) > 300 and all(len(r) > 0 for r in results), [len(r) for r in results]
    assert len(flat) == len(set(flat))                        # no scene held by two live workers
    assert {a for r in results for _, a in r} == {1}          # no attempt burnt by concurrency


def _claim_and_hold(url: str, schema: str, label: str, out, seconds: float) -> None:
    """Claim one scene on an own session and keep working on it (sleep) until killed."""
    cfg = make_cfg(schema)                                    # 60 min lease: only liveness frees it
    session = queue.Session(url)
    with session.tx() as conn:
        claims = queue.claim(conn, cfg, "scl", queue.new_owner(label), n=1)
    out.put(claims[0].obsid)
    time.sleep(seconds)


def test_a_killed_worker_scene_is_claimable_at_once_a_live_one_never(db_url, db_schema):
    """Liveness lock: while the holder lives nobody takes its scene (not even a process
    with the same owner label, as a retried Airflow task); the moment it is SIGKILLed,
    the next claim takes the scene, without waiting for the 60 min lease."""
    cfg = make_cfg(db_schema, max_attempts=2)
    seed(db_url, cfg, n_s2=1)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    label = "cbm_x/run1/scl.extract/0"
    p = ctx.Process(target=_claim_and_hold, args=(db_url, db_schema, label, out, 120))
    p.start()
    obsid = out.get(timeout=60)
    twin = queue.Session(db_url)
    with twin.tx() as conn:                                   # same label, alive holder: no takeover
        assert queue.claim(conn, cfg, "scl", queue.new_owner(label)) == []
        held = queue.held_by_others(conn, cfg, "scl", queue.new_owner(label))
    assert [h[0] for h in held] == [obsid] and held[0][1].startswith(label + "@")
    assert queue.cleanup(db_url, cfg).requeued == {}          # cleanup leaves a live holder alone
    assert queue.requeue(db_url, cfg, [obsid], ["scl"]) == 0
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    t0 = time.monotonic()
    with twin.tx() as conn:
        again = queue.claim(conn, cfg, "scl", queue.new_owner(label))
    assert [(c.obsid, c.attempts) for c in again] == [(obsid, 2)]
    assert time.monotonic() - t0 < 5
    # the rescuer's connection dies too, at max_attempts: within the grace time the scene
    # waits (a worker whose connection dropped gives it back on reconnect), then it gets a
    # named status
    twin.close()
    with transaction(db_url) as conn:
        assert queue.claim(conn, cfg, "scl", queue.new_owner("third")) == []
    assert stage_status(db_url, db_schema, "scl") == {obsid: queue.INPROGRESS}
    with psycopg.connect(db_url) as c:                         # the grace time passes
        c.execute(f'UPDATE "{db_schema}".scene_stages SET updated_at = updated_at - %s',
                  (dt.timedelta(seconds=queue.EXHAUST_GRACE_S + 1),))
    with transaction(db_url) as conn:
        assert queue.claim(conn, cfg, "scl", queue.new_owner("third")) == []
    assert stage_status(db_url, db_schema, "scl") == {obsid: queue.LEASE_EXPIRED}
    assert catalogue_status(db_url, db_schema) == {queue.LEASE_EXPIRED: 1}


def test_a_connection_drop_on_the_last_attempt_does_not_burn_the_scene(db_url, db_schema):
    """The holder's connection is killed (database restart, network) while it works on the
    scene's last allowed attempt: another worker's claim leaves it alone for the grace time,
    and the holder, reconnected, gives it back unburnt."""
    cfg = make_cfg(db_schema, max_attempts=1)
    seed(db_url, cfg, n_s2=1)
    holder = queue.Session(db_url)
    owner = queue.new_owner("holder")
    with holder.tx() as conn:
        (c,) = queue.claim(conn, cfg, "scl", owner)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with transaction(db_url) as conn:                          # another worker, meanwhile
        assert queue.claim(conn, cfg, "scl", queue.new_owner("other")) == []
    assert stage_status(db_url, db_schema, "scl") == {c.obsid: queue.INPROGRESS}
    holder.reset()                                             # reconnect, give it back
    with holder.tx() as conn:
        queue.release(conn, cfg, c, owner)
    assert stage_status(db_url, db_schema, "scl") == {c.obsid: queue.INGESTED}
    with holder.tx() as conn:
        again = queue.claim(conn, cfg, "scl", owner)
    assert [(x.obsid, x.attempts) for x in again] == [(c.obsid, 1)]
    holder.close()


def test_cleanup_and_requeue_take_back_a_dead_worker_scene(db_url, db_schema):
    cfg = make_cfg(db_schema)
    seed(db_url, cfg, n_s2=2)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=_claim_and_hold, args=(db_url, db_schema, "cli", out, 120))
    p.start()
    first = out.get(timeout=60)
    q2 = ctx.Process(target=_claim_and_hold, args=(db_url, db_schema, "cli", out, 120))
    q2.start()
    second = out.get(timeout=60)
    for proc in (p, q2):
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    assert queue.requeue(db_url, cfg, [second], ["scl"]) == 1      # the operator's re-run takes it back
    assert queue.cleanup(db_url, cfg).requeued == {"scl": [first]}   # and cleanup the other one
    assert stage_status(db_url, db_schema, "scl") == {first: "ingested", second: "ingested"}


def _claim_and_die(url: str, schema: str, out) -> None:
    cfg = make_cfg(schema, lease_minutes=1.0 / 60)            # 1 s lease
    session = queue.Session(url)
    with session.tx() as conn:
        claims = queue.claim(conn, cfg, "scl", queue.new_owner("stuck"), n=1)
    out.put(claims[0].obsid)
    time.sleep(60)                                            # alive but stuck


def test_a_stuck_live_worker_loses_its_scene_when_the_lease_expires(db_url, db_schema):
    cfg = make_cfg(db_schema, lease_minutes=1.0 / 60)
    seed(db_url, cfg, n_s2=1)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=_claim_and_die, args=(db_url, db_schema, out))
    p.start()
    try:
        obsid = out.get(timeout=60)
        s = queue.Session(db_url)
        time.sleep(1.5)                                       # lease expired, the holder still lives
        with s.tx() as conn:
            again = queue.claim(conn, cfg, "scl", queue.new_owner("rescuer"))
        assert [(c.obsid, c.attempts) for c in again] == [(obsid, 2)]
        s.close()
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join()


def test_lost_lease_cannot_complete(db_url, db_schema):
    cfg = make_cfg(db_schema, lease_minutes=1.0 / 60)
    seed(db_url, cfg, n_s2=1)
    a, b = queue.new_owner("a"), queue.new_owner("b")
    with transaction(db_url) as conn:
        ca = queue.claim(conn, cfg, "scl", a)[0]
    time.sleep(1.2)
    with transaction(db_url) as conn:
        queue.claim(conn, cfg, "scl", b)
    with pytest.raises(queue.LeaseLost):
        with transaction(db_url) as conn:
            conn.execute(f'INSERT INTO "{db_schema}".hists VALUES (1, %s, %s)', (ca.obsid, '{"4": 1}'))
            queue.complete(conn, cfg, ca, a, rows=1)
    with psycopg.connect(db_url) as c:                         # rolled back with the rows
        assert c.execute(f'SELECT count(*) FROM "{db_schema}".hists').fetchone()[0] == 0


def test_fail_retry_and_cleanup(db_url, db_schema):
    cfg = make_cfg(db_schema, max_attempts=2)
    seed(db_url, cfg, n_s2=0, n_bs=3)
    owner = queue.new_owner("t")
    with transaction(db_url) as conn:
        c1, c2, c3 = queue.claim(conn, cfg, "bs", owner, n=3)
    with transaction(db_url) as conn:
        queue.fail(conn, cfg, c1, owner, "Read error", "decode failed", retryable=True)
        queue.fail(conn, cfg, c2, owner, "Bad metadata", "no CRS", retryable=False)
        queue.complete(conn, cfg, c3, owner, rows=2)
        # A partial row left by the failed scene (e.g. from the reference scripts).
        conn.execute(f'INSERT INTO "{db_schema}".sigs (pid, obsid, band) VALUES (1, %s, %s)', (c1.obsid, "VVb"))
        conn.execute(f'INSERT INTO "{db_schema}".sigs (pid, obsid, band) VALUES (1, %s, %s)', (c3.obsid, "VVb"))
    assert catalogue_status(db_url, db_schema) == {"Read error": 1, "Bad metadata": 1, "extracted": 1}
    rep = queue.cleanup(db_url, cfg)
    assert rep.requeued == {"bs": [c1.obsid]} and rep.rows_deleted == 1
    assert rep.permanent == {"Bad metadata": 1}
    st = stage_status(db_url, db_schema, "bs")
    assert st == {c1.obsid: "ingested", c2.obsid: "Bad metadata", c3.obsid: "extracted"}
    with psycopg.connect(db_url) as c:                          # the extracted scene's row is kept
        assert c.execute(f'SELECT obsid FROM "{db_schema}".sigs').fetchall() == [(c3.obsid,)]
    # Second failure: attempts (2) reached, the error becomes permanent.
    with transaction(db_url) as conn:
        again = queue.claim(conn, cfg, "bs", owner)
        assert [c.obsid for c in again] == [c1.obsid]
    with transaction(db_url) as conn:
        queue.fail(conn, cfg, again[0], owner, "Read error", "decode failed again", retryable=True)
    assert queue.cleanup(db_url, cfg).requeued == {}
    assert stage_status(db_url, db_schema, "bs")[c1.obsid] == "Read error"
    # Operator re-run resets attempts.
    assert queue.requeue(db_url, cfg, [c1.obsid], ["bs"]) == 1
    with transaction(db_url) as conn:
        assert [c.attempts for c in queue.claim(conn, cfg, "bs", owner)] == [1]


def test_release_does_not_count_an_attempt(db_url, db_schema):
    cfg = make_cfg(db_schema)
    seed(db_url, cfg, n_s2=0, n_bs=1)
    owner = queue.new_owner("t")
    with transaction(db_url) as conn:
        c = queue.claim(conn, cfg, "bs", owner)[0]
        queue.release(conn, cfg, c, owner)
    with transaction(db_url) as conn:
        assert queue.claim(conn, cfg, "bs", owner)[0].attempts == 1


def test_schema_check_does_not_block_running_workers(db_url, db_schema):
    """ensure_schema on a current schema takes no table lock (a worker holds row locks)."""
    import threading

    from cbm_ops.db import ensure_schema, schema_version

    cfg = make_cfg(db_schema)
    seed(db_url, cfg, n_s2=2)
    worker = psycopg.connect(db_url)                       # uncommitted claim: row locks held
    queue.claim(worker, cfg, "scl", queue.new_owner("w"), n=1)
    done = []
    t = threading.Thread(target=lambda: done.append(ensure_schema(db_url, db_schema)), daemon=True)
    t.start()
    t.join(timeout=15)
    try:
        assert done == [False]                             # returned at once, nothing applied
    finally:
        worker.rollback()
        worker.close()
    with psycopg.connect(db_url) as c:
        assert c.execute(f'SELECT version FROM "{db_schema}".cbm_schema').fetchone()[0] == schema_version()


def test_cleanup_and_a_late_writer_do_not_deadlock(db_url, db_schema):
    """A worker whose lease expired is writing (stage row locked, then catalogue row) while
    cleanup runs: cleanup skips the locked stage, finishes, and the write commits."""
    import threading

    cfg = make_cfg(db_schema, lease_minutes=1.0 / 60)
    seed(db_url, cfg, n_s2=0, n_bs=2)
    owner = queue.new_owner("late")
    with transaction(db_url) as conn:
        c = queue.claim(conn, cfg, "bs", owner, n=1)[0]
    time.sleep(1.2)                                            # lease expired, nobody took it
    worker = psycopg.connect(db_url)
    queue.lock_claim(worker, cfg, c, owner)                    # the write transaction begins
    result = {}
    t = threading.Thread(target=lambda: result.update(rep=queue.cleanup(db_url, cfg)), daemon=True)
    t.start()
    t.join(timeout=20)
    assert "rep" in result and result["rep"].requeued == {}   # finished, skipped the locked stage
    queue.complete(worker, cfg, c, owner, rows=1)              # stage row, then catalogue row
    worker.commit()
    worker.close()
    assert stage_status(db_url, db_schema, "bs")[c.obsid] == "extracted"
