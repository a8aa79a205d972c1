"""Maintenance: opt-in cloudy-sigs deletion, VACUUM/CLUSTER in autocommit, pg_dump backup."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import psycopg
import pytest

from cbm_ops.config import AoiConfig
from cbm_ops.db import ensure_schema
from cbm_ops.db.maintenance import run_maintenance
from cbm_ops.db.partitions import ensure_partition


def seeded(db_url, schema, **kw):
    """SYNTHETIC results of scenes 10 and 11 (one closed partition [0, 12) of width 12)."""
    kw.setdefault("partition_obsids", 12)
    cfg = AoiConfig(name="m", schema=schema, start_date=dt.date(2023, 1, 1), **kw)
    ensure_schema(db_url, schema, pid_indexes=cfg.pid_indexes)
    ensure_partition(db_url, cfg, 10)
    with psycopg.connect(db_url) as c:
        # catalogue rows 1..12: the partition's whole range is assigned (it is closed)
        c.execute(f"""INSERT INTO "{schema}".dias_catalogue (id, obstime, reference, sensor, card)
                      SELECT g, now(), 'r' || g, '2A', 's2' FROM generate_series(1, 12) g""")
        # SYNTHETIC rows: parcel 1 fully cloudy (SCL 9 only), parcel 2 partly, parcel 3 clear.
        for pid, hist in ((1, '{"9": 5}'), (2, '{"4": 3, "9": 2}'), (3, '{"4": 7}')):
            c.execute(f'INSERT INTO "{schema}".hists VALUES (%s, 10, %s)', (pid, hist))
            for band in ("B04", "B08"):
                c.execute(f'INSERT INTO "{schema}".sigs (pid, obsid, band, count) VALUES (%s, 10, %s, 5)',
                          (pid, band))
        c.execute(f'INSERT INTO "{schema}".sigs (pid, obsid, band, count) VALUES (1, 11, %s, 5)', ("VVb",))
    return cfg


def sigs(db_url, schema):
    with psycopg.connect(db_url) as c:
        return c.execute(f'SELECT pid, obsid, trim(band) FROM "{schema}".sigs ORDER BY 1, 2, 3').fetchall()


def test_cloudy_deletion_is_opt_in(db_url, db_schema):
    cfg = seeded(db_url, db_schema)
    rep = run_maintenance(db_url, cfg, cluster=False)
    assert "cloudy_sigs_deleted" not in rep and len(sigs(db_url, db_schema)) == 7
    rep = run_maintenance(db_url, cfg, delete_cloudy=True, cluster=False)
    assert rep["cloudy_sigs_deleted"] == 2
    # parcel 1's S2 rows are gone; its histogram and its S1 row stay
    assert sigs(db_url, db_schema) == [(1, 11, "VVb"), (2, 10, "B04"), (2, 10, "B08"),
                                       (3, 10, "B04"), (3, 10, "B08")]
    with psycopg.connect(db_url) as c:
        assert c.execute(f'SELECT count(*) FROM "{db_schema}".hists').fetchone()[0] == 3


@pytest.mark.parametrize("pid_indexes", [False, True])
def test_vacuum_cluster_and_backup(db_url, db_schema, tmp_path, pid_indexes):
    cfg = seeded(db_url, db_schema, pid_indexes=pid_indexes)
    rep = run_maintenance(db_url, cfg, backup_dir=str(tmp_path))
    assert rep["cluster_sigs"] == rep["cluster_hists"] == "done" and "vacuum_s" in rep
    assert rep["partitions"] == {0: {"sigs": "done", "hists": "done"}}
    again = run_maintenance(db_url, cfg)                      # nothing changed since: not rewritten
    assert again["partitions"] == {0: {"sigs": "unchanged", "hists": "unchanged"}}
    with psycopg.connect(db_url) as c:
        idx = {r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (db_schema,))}
        clustered = c.execute("""SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                                 JOIN pg_namespace n ON n.oid = c.relnamespace
                                 WHERE n.nspname = %s AND i.indisclustered""", (db_schema,)).fetchone()[0]
    assert ("sigs_pidx" in idx) is pid_indexes          # temporary index dropped when off
    assert not any(i.endswith("_cluster_pid") for i in idx)
    assert clustered == (2 if pid_indexes else 0)
    dump = rep["backup"]
    assert dump.endswith(".dump") and db_schema in dump
    listing = subprocess.run([shutil.which("pg_restore"), "--list", dump], capture_output=True, text=True,
                             check=True).stdout
    for table in ("sigs_o000000000", "hists_o000000000", "dias_catalogue", "aois"):
        assert f"TABLE DATA {db_schema} {table}" in listing
    assert "sizes_after" in rep and rep["sizes_after"]["sigs"] > 0


def test_cluster_is_skipped_while_scenes_of_the_partition_are_pending(db_url, db_schema):
    cfg = seeded(db_url, db_schema)
    with psycopg.connect(db_url) as c:
        c.execute(f"""INSERT INTO "{db_schema}".scene_stages (obsid, stage, status, lease_owner, lease_expires)
                      VALUES (10, 's2_10m', 'inprogress', 'w', now() + interval '1 hour')""")
    rep = run_maintenance(db_url, cfg)
    assert rep["cluster_sigs"] == rep["cluster_hists"] == "skipped: 1 stages pending or in progress"


def test_cluster_skips_the_open_partition(db_url, db_schema):
    """A partition whose range is not fully assigned yet receives new scenes: left alone."""
    cfg = seeded(db_url, db_schema, partition_obsids=100)
    rep = run_maintenance(db_url, cfg)
    assert rep["partitions"][0]["sigs"].startswith("skipped: open")


def test_a_scene_whose_scl_failed_for_good_does_not_keep_its_partition_busy(db_url, db_schema):
    """The S2 band stages of a scene whose SCL stage ended in a permanent error wait for an
    operator (they stay claimable if the SCL is requeued), not for a worker: CLUSTER runs."""
    cfg = seeded(db_url, db_schema)
    with psycopg.connect(db_url) as c:
        c.execute(f"""INSERT INTO "{db_schema}".scene_stages (obsid, stage, status, retryable, attempts)
                      VALUES (10, 'scl', 'Read error', true, 3), (10, 's2_10m', 'ingested', true, 0),
                             (10, 's2_20m', 'ingested', true, 0), (11, 'bs', 'Quarantined', true, 1)""")
    rep = run_maintenance(db_url, cfg)
    assert rep["partitions"] == {0: {"sigs": "done", "hists": "done"}}
    with psycopg.connect(db_url) as c:                        # an SCL that will be retried: still busy
        c.execute(f"""UPDATE "{db_schema}".scene_stages SET attempts = 1 WHERE obsid = 10 AND stage = 'scl'""")
        c.execute(f'INSERT INTO "{db_schema}".sigs (pid, obsid, band, count) VALUES (4, 11, %s, 5)', ("VVb",))
    rep = run_maintenance(db_url, cfg)
    assert rep["partitions"][0]["sigs"] == "skipped: 2 stages pending or in progress"


def test_a_locked_table_skips_its_vacuum_and_cluster_and_leaves_no_index(db_url, db_schema):
    """An analyst's open read holds a partition (CLUSTER waits for ACCESS EXCLUSIVE); a
    CREATE INDEX holds another table (VACUUM waits): both are skipped, the rest is done, the
    index built for CLUSTER does not stay, and the next run catches up."""
    cfg = seeded(db_url, db_schema)
    cfg = cfg.model_copy(update={"maintenance": cfg.maintenance.model_copy(update={"lock_timeout_s": 0.5})})

    def indexes():
        with psycopg.connect(db_url) as c:
            return {r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (db_schema,))}

    with psycopg.connect(db_url) as reader, psycopg.connect(db_url) as ddl:
        reader.execute(f'SELECT count(*) FROM "{db_schema}".hists_o000000000').fetchone()   # transaction open
        ddl.execute(f'LOCK TABLE "{db_schema}".aois IN SHARE MODE')
        rep = run_maintenance(db_url, cfg)
        assert rep["vacuum_skipped"] == ["aois"]
        assert rep["partitions"] == {0: {"hists": "skipped: locked", "sigs": "done"}}
    assert not any(i.endswith("_cluster_pid") for i in indexes())
    rep = run_maintenance(db_url, cfg)
    assert "vacuum_skipped" not in rep and rep["partitions"][0]["hists"] == "done"
    assert not any(i.endswith("_cluster_pid") for i in indexes())
