"""Maintenance: opt-in cloudy-sigs deletion, VACUUM/CLUSTER in autocommit, pg_dump backup."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import psycopg
import pytest

from cbm_ops.config import AoiConfig
from cbm_ops.db import ensure_schema
from cbm_ops.maintenance import run_maintenance
from cbm_ops.partitions import ensure_partition


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
