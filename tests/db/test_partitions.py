"""Partitioned sigs/hists: partitions on demand, maintenance beside extraction, index-served
time series, and the migration of unpartitioned schemas of version 1."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

from cbm_ops import queue
from cbm_ops.config import AoiConfig
from cbm_ops.db import ensure_schema, transaction
from cbm_ops.db.maintenance import run_maintenance, vacuum_cluster
from cbm_ops.db.partitions import ensure_partition, list_partitions, migrate, table_kinds
from cbm_ops.errors import LegacySchemaError
from cbm_ops.extract import writer

V1_SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "schema_v1.sql"
T0 = dt.datetime(2024, 5, 1, 10, 30)


def make_cfg(schema: str, **kw) -> AoiConfig:
    kw.setdefault("partition_obsids", 10)
    return AoiConfig(name="p", schema=schema, start_date=dt.date(2024, 1, 1), cards=("bs",), **kw)


def catalogue_rows(url: str, schema: str, ids) -> None:
    """SYNTHETIC catalogue rows (CARD-BS) with the given ids."""
    with psycopg.connect(url) as c:
        for i in ids:
            c.execute(f'INSERT INTO "{schema}".dias_catalogue (id, obstime, reference, sensor, card) '
                      "VALUES (%s, %s, %s, '1A', 'bs')", (i, T0 + dt.timedelta(days=i), f"S1A_CARD_BS_{i:04d}"))


def claimed(url: str, schema: str, obsid: int, owner: str = "w") -> queue.Claim:
    with psycopg.connect(url) as c:
        c.execute(f'INSERT INTO "{schema}".scene_stages (obsid, stage, status, lease_owner, lease_expires, attempts) '
                  "VALUES (%s, 'bs', 'inprogress', %s, now() + interval '1 hour', 1)", (obsid, owner))
    return queue.Claim(obsid=obsid, stage="bs", attempts=1, reference=f"S1A_CARD_BS_{obsid:04d}",
                       obstime=T0, card="bs", product_identifier=None, epsg=32631, tile=None,
                       processing_baseline=None)


def stats_for(n: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    pids = np.arange(1, n + 1, dtype=np.int32)
    sts = []
    for _ in range(2):
        st = rng.random((n, 8)) * 0.3
        st[:, 0] = rng.integers(1, 50, n)
        sts.append(st)
    return pids, sts


def write_scene(url: str, cfg: AoiConfig, obsid: int, n: int = 2000) -> int:
    """A whole CARD-BS scene stage through the production write path (SYNTHETIC values)."""
    c = claimed(url, cfg.schema, obsid)
    part = ensure_partition(url, cfg, obsid)
    pids, sts = stats_for(n, obsid)
    with transaction(url) as conn:
        return writer.write_stage(conn, cfg, c, "w", part, sigs=(pids, ["VVb", "VHb"], sts),
                                  bands=["VVb", "VHb"], parcels=n, seconds=0.0)


def all_rows(url: str, schema: str, table: str) -> list[tuple]:
    with psycopg.connect(url) as c:
        return c.execute(f'SELECT * FROM "{schema}".{table} ORDER BY obsid, pid'
                         + (", band" if table == "sigs" else "")).fetchall()


def test_partitions_are_created_on_demand_with_aligned_ranges(db_url, db_schema):
    cfg = make_cfg(db_schema)
    ensure_schema(db_url, db_schema)
    catalogue_rows(db_url, db_schema, [3, 9, 10, 27])
    for obsid in (3, 9, 10, 27):
        assert write_scene(db_url, cfg, obsid, n=50) == 100
    with transaction(db_url) as conn:
        parts = list_partitions(conn, db_schema)
        assert [(p.lo, p.hi) for p in parts] == [(0, 10), (10, 20), (20, 30)]
        assert table_kinds(conn, db_schema) == ("p", "p")
        # each scene's rows live in its own range's leaf table, and only there
        per_leaf = {p.sigs: conn.execute(sql.SQL("SELECT array_agg(DISTINCT obsid ORDER BY obsid) FROM {}.{}").format(
            sql.Identifier(db_schema), sql.Identifier(p.sigs))).fetchone()[0] for p in parts}
    assert per_leaf == {"sigs_o000000000": [3, 9], "sigs_o000000010": [10], "sigs_o000000020": [27]}
    # a rerun of a scene replaces its rows in one transaction: same count, no duplicates
    with psycopg.connect(db_url) as c:
        c.execute(f'DELETE FROM "{db_schema}".scene_stages WHERE obsid = 10')
    assert write_scene(db_url, cfg, 10, n=50) == 100
    assert len(all_rows(db_url, db_schema, "sigs")) == 400


def test_maintenance_of_an_old_partition_does_not_block_writing_a_new_scene(db_url, db_schema):
    cfg = make_cfg(db_schema)
    ensure_schema(db_url, db_schema)
    catalogue_rows(db_url, db_schema, range(1, 36))
    for obsid in (2, 5):                                  # the old, closed partition [0, 10)
        write_scene(db_url, cfg, obsid)
    # 1) a scene is being written to the new partition (uncommitted COPY) while maintenance
    #    vacuums and CLUSTERs the old one: maintenance finishes without waiting
    c12 = claimed(db_url, db_schema, 12)
    part = ensure_partition(db_url, cfg, 12)
    writing = psycopg.connect(db_url)
    pids, sts = stats_for(2000, 12)
    writer.write_stage(writing, cfg, c12, "w", part, sigs=(pids, ["VVb", "VHb"], sts), bands=["VVb", "VHb"],
                       parcels=2000, seconds=0.0)
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(rep=vacuum_cluster(db_url, cfg)), daemon=True)
    t.start()
    t.join(timeout=60)
    try:
        assert "rep" in result, "maintenance waited for the writer of another partition"
        assert result["rep"]["partitions"][0] == {"sigs": "done", "hists": "done"}
        assert result["rep"]["partitions"][10]["sigs"].startswith("skipped")   # the stage is in progress
    finally:
        writing.commit()
        writing.close()
    # 2) the old partition is locked as CLUSTER locks it (ACCESS EXCLUSIVE) while a new
    #    scene is extracted into an existing newer partition and another one into a
    #    partition that does not exist yet: both writes commit
    holder = psycopg.connect(db_url)
    holder.execute(f'LOCK TABLE "{db_schema}".sigs_o000000000, "{db_schema}".hists_o000000000 '
                   "IN ACCESS EXCLUSIVE MODE")
    done: list[int] = []
    t = threading.Thread(target=lambda: done.extend([write_scene(db_url, cfg, 15), write_scene(db_url, cfg, 33)]),
                         daemon=True)
    t.start()
    t.join(timeout=60)
    try:
        assert done == [4000, 4000], "a write to a new partition waited for the old partition's lock"
    finally:
        holder.rollback()
        holder.close()
    with psycopg.connect(db_url) as c:
        got = dict(c.execute(f'SELECT obsid, count(*) FROM "{db_schema}".sigs GROUP BY 1').fetchall())
    assert got == {2: 4000, 5: 4000, 12: 4000, 15: 4000, 33: 4000}


def test_parcel_time_series_is_index_served_across_partitions(db_url, db_schema):
    cfg = make_cfg(db_schema, partition_obsids=4)
    ensure_schema(db_url, db_schema)
    catalogue_rows(db_url, db_schema, range(1, 13))
    for obsid in range(1, 13):                            # 3 partitions, 12 scenes x 20,000 parcels
        write_scene(db_url, cfg, obsid, n=20_000)
    with psycopg.connect(db_url, autocommit=True) as c:
        for table in ("sigs", "hists", "dias_catalogue"):
            c.execute(f'ANALYZE "{db_schema}".{table}')
        query = (f'SELECT d.obstime, s.band, s.count, s.mean, s.p50 FROM "{db_schema}".sigs s '
                 f'JOIN "{db_schema}".dias_catalogue d ON d.id = s.obsid '
                 "WHERE s.pid = %s AND s.band IN ('VVb', 'VHb') ORDER BY d.obstime")
        plan = c.execute("EXPLAIN (FORMAT JSON) " + query, (777,)).fetchone()[0]
        rows = c.execute(query, (777,)).fetchall()
    scans: list[tuple[str, str]] = []

    def walk(node):
        if "Relation Name" in node:
            scans.append((node["Node Type"], node["Relation Name"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    on_sigs = [s for s in scans if s[1].startswith("sigs_o")]
    assert on_sigs and all(kind in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan") for kind, _ in on_sigs), \
        json.dumps(plan)[:2000]
    assert len(rows) == 24 and [r[0] for r in rows] == sorted(r[0] for r in rows)


def v1_schema(url: str, schema: str, pid_indexes: bool) -> None:
    """An AOI schema as version 1 created it (unpartitioned sigs/hists), with SYNTHETIC rows."""
    with psycopg.connect(url) as c:
        c.execute(sql.SQL(V1_SCHEMA.read_text()).format(schema=sql.Identifier(schema)))
        if pid_indexes:
            c.execute(f'CREATE INDEX sigs_pidx ON "{schema}".sigs (pid); '
                      f'CREATE INDEX hists_pidx ON "{schema}".hists (pid)')
        c.execute(f'INSERT INTO "{schema}".cbm_schema (version) VALUES (1)')
        c.execute(f"""INSERT INTO "{schema}".dias_catalogue (id, obstime, reference, sensor, card)
                      SELECT g, now(), 'S1A_' || g, '1A', 'bs' FROM generate_series(1, 23) g""")
        c.execute(f"""INSERT INTO "{schema}".sigs
                      SELECT p, o, b, p % 7, o * 0.5, 0.1, 0, 1, 0.2, 0.3, 0.4
                      FROM generate_series(1, 300) p, generate_series(1, 23) o, unnest(ARRAY['VVb', 'VHb']) b""")
        c.execute(f"""INSERT INTO "{schema}".hists
                      SELECT p, o, json_build_object('4', p % 5 + 1) FROM generate_series(1, 300) p,
                      generate_series(1, 23, 2) o""")


@pytest.mark.parametrize("pid_indexes", [False, True])
def test_migration_of_an_unpartitioned_version_1_schema(db_url, db_schema, pid_indexes):
    cfg = make_cfg(db_schema, pid_indexes=pid_indexes)
    v1_schema(db_url, db_schema, pid_indexes)
    before = {t: all_rows(db_url, db_schema, t) for t in ("sigs", "hists")}
    with pytest.raises(LegacySchemaError, match="migrate-partitions"):
        ensure_schema(db_url, db_schema, pid_indexes=pid_indexes)
    rep = migrate(db_url, cfg)
    assert rep["sigs"]["obsids"] == rep["hists"]["obsids"] == [0, 30]
    with transaction(db_url) as conn:
        assert table_kinds(conn, db_schema) == ("p", "p")
        assert [(p.lo, p.hi, p.sigs) for p in list_partitions(conn, db_schema)] == [(0, 30, "sigs_legacy")]
    assert {t: all_rows(db_url, db_schema, t) for t in ("sigs", "hists")} == before     # not a row changed
    assert ensure_schema(db_url, db_schema, pid_indexes=pid_indexes) is False         # current now
    assert migrate(db_url, cfg) == {"sigs": "partitioned already", "hists": "partitioned already"}
    # new scenes get new partitions; a requeued old scene is rewritten in the legacy one
    catalogue_rows(db_url, db_schema, [31, 47])
    with psycopg.connect(db_url) as c:
        c.execute(f'DELETE FROM "{db_schema}".sigs WHERE obsid = 7')
    for obsid in (31, 47, 7):
        assert write_scene(db_url, cfg, obsid, n=300) == 600
    with transaction(db_url) as conn:
        assert [(p.lo, p.hi) for p in list_partitions(conn, db_schema)] == [(0, 30), (30, 40), (40, 50)]
    sigs = all_rows(db_url, db_schema, "sigs")
    assert len(sigs) == len(before["sigs"]) + 600 + 600
    # the analyst views read the partitioned parents, not the renamed old tables
    with psycopg.connect(db_url) as c:
        in_view = dict(c.execute(f'SELECT obsid, count(*) FROM "{db_schema}".parcel_observations_raw '
                                 "WHERE obsid IN (31, 47) GROUP BY obsid").fetchall())
        defs = [r[0] for r in c.execute("SELECT definition FROM pg_views WHERE schemaname = %s", (db_schema,))]
    assert in_view == {31: 300, 47: 300} and defs and not any("_legacy" in d for d in defs)
    with psycopg.connect(db_url) as c:
        idx = {r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (db_schema,))}
    assert ("sigs_pidx" in idx) is pid_indexes and "sigs_pkey" in idx and "sigs_legacy_pkey" in idx
    rep = run_maintenance(db_url, cfg)
    assert rep["partitions"][0] == {"sigs": "done", "hists": "done"}
