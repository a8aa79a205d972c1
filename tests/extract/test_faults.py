"""Faults, in separate processes against a real PostGIS, on the bundled REAL sample:
a SIGKILLed `extract` and a database restart heal with a plain rerun (row for row equal
to a clean run, without waiting for the lease); a database that stays away and a bad
`--aoi-wkt` end in one line and a non-zero exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
import yaml
from conftest import ROOT

from cbm_ops.cli import main as cli
from cbm_ops.db.devdb import TempPostgis

DEMO = ROOT / "include" / "aois" / "demo_flanders.yaml"


def aoi_file(tmp_path, schema: str, **over) -> str:
    """The demo AOI (Sentinel-1 CARD-BS only: 159 real scenes) under its own schema."""
    cfg = yaml.safe_load(DEMO.read_text())
    cfg.update(name=schema, schema=schema, cards=["bs"], **over)
    cfg["parcels"]["source"] = str(ROOT / cfg["parcels"]["source"])
    cfg["catalogue"]["path"] = str(ROOT / cfg["catalogue"]["path"])
    cfg["store"]["root"] = str(ROOT / cfg["store"]["root"])
    path = tmp_path / f"{schema}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def prepare(url: str, aoi: str) -> None:
    for args in (["import-parcels"], ["harvest", "--start", "2017-08-01", "--end", "2018-12-01"]):
        assert cli([args[0], "--aoi", aoi, "--db-url", url, *args[1:]]) == 0


def extract_proc(url: str, aoi: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cbm_ops", "extract", "--aoi", aoi, "--db-url", url],
                            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def snapshot(url: str, schema: str) -> list[tuple]:
    """Every sigs row, keyed by product reference (obsids of two schemas may differ)."""
    with psycopg.connect(url) as c:
        return c.execute(f'SELECT d.reference, s.pid, s.band, s.count, s.mean, s.std, s.min, s.max, s.p25, s.p50, '
                         f's.p75 FROM "{schema}".sigs s JOIN "{schema}".dias_catalogue d ON d.id = s.obsid '
                         'ORDER BY 1, 2, 3').fetchall()


def stage_counts(url: str, schema: str) -> dict[str, int]:
    with psycopg.connect(url) as c:
        return dict(c.execute(f'SELECT status, count(*) FROM "{schema}".scene_stages GROUP BY 1').fetchall())


def wait_extracted(url: str, schema: str, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while stage_counts(url, schema).get("extracted", 0) < n:
        assert proc.poll() is None, f"extract ended early: {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, "extraction did not progress"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def clean(db_url, tmp_path_factory):
    """A clean, undisturbed run of the same AOI: the reference rows."""
    schema = "t_clean_faults"
    aoi = aoi_file(tmp_path_factory.mktemp("clean"), schema)
    prepare(db_url, aoi)
    assert cli(["extract", "--aoi", aoi, "--db-url", db_url]) == 0
    rows = snapshot(db_url, schema)
    assert len(rows) == 2 * 3021 and stage_counts(db_url, schema) == {"extracted": 159}
    yield rows
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_sigkill_mid_run_then_a_plain_rerun_equals_a_clean_run(db_url, db_schema, tmp_path, clean):
    aoi = aoi_file(tmp_path, db_schema)
    prepare(db_url, aoi)
    proc = extract_proc(db_url, aoi)
    wait_extracted(db_url, db_schema, 40, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    rerun = extract_proc(db_url, aoi)                   # no owner label, no cleanup, no waiting
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert time.monotonic() - t0 < 120
    assert "left alone because another live worker holds them" not in err
    assert stage_counts(db_url, db_schema) == {"extracted": 159}
    assert snapshot(db_url, db_schema) == clean


def test_database_restart_during_extraction_is_ridden_out(tmp_path, clean):
    pg = TempPostgis.start(dbname="cbm_restart")
    try:
        schema = "restart_run"
        aoi = aoi_file(tmp_path, schema)
        prepare(pg.url, aoi)
        proc = extract_proc(pg.url, aoi)
        wait_extracted(pg.url, schema, 40, proc)
        pg.restart()                                    # every session is terminated, server back in ~1 s
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        assert "database connection failed" in err and "Traceback" not in err
        assert stage_counts(pg.url, schema) == {"extracted": 159}
        assert snapshot(pg.url, schema) == clean
        with psycopg.connect(pg.url) as c:              # the scene in flight was given back, not burnt
            assert c.execute(f'SELECT max(attempts) FROM "{schema}".scene_stages').fetchone()[0] == 1
    finally:
        pg.stop()


def test_a_database_that_stays_away_ends_in_one_line(tmp_path):
    pg = TempPostgis.start(dbname="cbm_gone")
    try:
        schema = "gone_run"
        aoi = aoi_file(tmp_path, schema, db_retry_minutes=0.1)
        prepare(pg.url, aoi)
        proc = extract_proc(pg.url, aoi, CBM_DB_POOL_TIMEOUT="3")
        wait_extracted(pg.url, schema, 20, proc)
        pg.server_stop()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode != 0
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1]
        assert "DatabaseUnavailable: database unreachable for" in last, err[-2000:]
    finally:
        pg.stop()


def test_postgis_errors_from_user_input_are_one_line(db_url, db_schema, tmp_path):
    aoi = aoi_file(tmp_path, db_schema)
    proc = subprocess.run([sys.executable, "-m", "cbm_ops", "import-parcels", "--aoi", aoi, "--db-url", db_url,
                           "--aoi-wkt", "POLYGON((3 50, 4 50, 4"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "database refused the command" in proc.stderr.strip().splitlines()[-1]


def test_cli_harvest_keeps_to_the_campaign(db_url, db_schema, tmp_path):
    """The AOI's start_date/end_date bound a CLI harvest as they bound the DAG's."""
    aoi = aoi_file(tmp_path, db_schema, start_date="2018-01-01", end_date="2018-06-01")
    assert cli(["import-parcels", "--aoi", aoi, "--db-url", db_url]) == 0
    assert cli(["harvest", "--aoi", aoi, "--db-url", db_url, "--start", "2017-01-01", "--end", "2019-06-01"]) == 0
    with psycopg.connect(db_url) as c:
        lo, hi, n = c.execute(f'SELECT min(obstime), max(obstime), count(*) FROM "{db_schema}".dias_catalogue'
                              ).fetchone()
    assert n > 0 and str(lo) >= "2018-01-01" and str(hi) < "2018-06-01"
    # dates with a UTC offset are converted, not a traceback
    assert cli(["harvest", "--aoi", aoi, "--db-url", db_url, "--start", "2018-02-01T01:00:00+01:00",
                "--end", "2018-03-01T00:00:00Z"]) == 0


def test_a_target_path_that_is_a_file_is_one_line(db_url, db_schema, tmp_path, capfd):
    aoi = aoi_file(tmp_path, db_schema)
    assert cli(["import-parcels", "--aoi", aoi, "--db-url", db_url]) == 0
    (tmp_path / "a-file").write_text("x")
    assert cli(["export", "--aoi", aoi, "--db-url", db_url, "--year", "2018", "--out-dir",
                str(tmp_path / "a-file")]) == 2
    assert "Traceback" not in capfd.readouterr().err


def test_a_product_identifier_cannot_leave_the_store(db_url, db_schema, tmp_path):
    import datetime as dt

    from cbm_ops.config import load_aoi
    from cbm_ops.db import transaction
    from cbm_ops.extract import run_queue
    from cbm_ops.extract.store import StorePathError, product_path
    from cbm_ops.harvest import HarvestReport, SceneRecord, upsert
    from cbm_ops.queue import enqueue

    with pytest.raises(StorePathError):
        product_path("/eodata/../../etc", "x", "bs", dt.datetime(2018, 1, 1))
    aoi = aoi_file(tmp_path, db_schema)
    assert cli(["import-parcels", "--aoi", aoi, "--db-url", db_url]) == 0
    cfg = load_aoi(aoi)
    t = dt.datetime(2018, 5, 4, 17, 32, 37)
    rec = SceneRecord(
        reference="S1A_IW_GRDH_1SDV_20180504T173237_20180504T173302_021758_0054FE_0000_CARD_BS", obstime=t,
        sensor="1A", card="bs", footprint_wkt="MULTIPOLYGON(((2.8 50.7, 3.2 50.7, 3.2 51, 2.8 51, 2.8 50.7)))",
        tile=None, epsg=32631, relative_orbit=88, orbit_direction="ASCENDING", processing_baseline=None,
        cloud_cover=None, product_identifier="/eodata/Sentinel-1/../../../../etc", catalogue_id=None,
        source="test")
    with transaction(db_url) as conn:
        upsert(conn, cfg.schema, [rec], HarvestReport())
        enqueue(conn, cfg)
    out = run_queue(db_url, cfg, "bs")
    assert out["by_status"] == {"Bad metadata": 1} and "leaves the store root" in out["results"][0]["error"]


def test_a_scene_store_gone_as_a_whole_is_ridden_out(tmp_path, db_url, db_schema, clean):
    """The store's root empty for 6 s (an unmounted /eodata leaves its empty mount point):
    no scene gets 'No file', none is counted, the rows equal a clean run's (issue 20)."""
    import shutil

    store = tmp_path / "eodata"
    shutil.copytree(ROOT / "include" / "sample" / "eodata" / "Sentinel-1", store / "Sentinel-1")
    aoi = aoi_file(tmp_path, db_schema)
    cfg = yaml.safe_load(open(aoi).read())
    cfg["store"]["root"] = str(store)
    open(aoi, "w").write(yaml.safe_dump(cfg))
    prepare(db_url, aoi)
    proc = extract_proc(db_url, aoi)
    wait_extracted(db_url, db_schema, 40, proc)
    (store / "Sentinel-1").rename(tmp_path / "away")           # the store is gone as a whole
    time.sleep(6)
    assert stage_counts(db_url, db_schema).get("extracted", 0) < 159
    (tmp_path / "away").rename(store / "Sentinel-1")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "scene store unavailable while reading" in err and "Traceback" not in err
    assert stage_counts(db_url, db_schema) == {"extracted": 159}
    assert snapshot(db_url, db_schema) == clean
    with psycopg.connect(db_url) as c:                  # given back uncounted
        assert c.execute(f'SELECT max(attempts) FROM "{db_schema}".scene_stages').fetchone()[0] == 1


def test_a_batch_waits_for_its_scene_locked_by_an_open_claim(tmp_path, db_url, db_schema):
    """A claim whose worker went off the network before it committed keeps the scene's row
    locked (status still 'ingested'): a batch waits for it instead of ending without it,
    and takes it when that transaction ends (issue 20: a stage ended without its scene)."""
    import threading

    from cbm_ops.config import load_aoi
    from cbm_ops.extract import run_queue

    aoi = aoi_file(tmp_path, db_schema)
    prepare(db_url, aoi)
    cfg = load_aoi(aoi)
    with psycopg.connect(db_url) as c:
        ids = [r[0] for r in c.execute(f'SELECT id FROM "{db_schema}".dias_catalogue ORDER BY obstime, id LIMIT 3')]
    lock = psycopg.connect(db_url)
    lock.execute(f"""SELECT 1 FROM "{db_schema}".scene_stages WHERE obsid = %s AND stage = 'bs' FOR UPDATE""",
                 (ids[1],))
    # without waiting, the batch ends without the locked scene (what happened before)
    out = run_queue(db_url, cfg, "bs", obsids=ids)
    assert sorted(r["obsid"] for r in out["results"]) == [ids[0], ids[2]]
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(run_queue(db_url, cfg, "bs", obsids=ids, wait_held_s=120)))
    t.start()
    time.sleep(3)
    assert t.is_alive()                                  # waiting for the locked scene
    lock.rollback()                                      # the vanished worker's session ends
    lock.close()
    t.join(timeout=60)
    assert not t.is_alive()
    assert [r["obsid"] for r in result["results"]] == [ids[1]]
    with psycopg.connect(db_url) as c:
        assert c.execute(f"""SELECT status FROM "{db_schema}".scene_stages WHERE obsid = %s AND stage = 'bs'""",
                         (ids[1],)).fetchone()[0] == "extracted"
