"""The sigs write path in `make bench` (called by scripts/bench.py, same run, same server).

* :func:`write_scenes`: whole 10 m scene stages written as the worker writes them
  (``writer.write_stage``: partition lookup, DELETE of the stage's old rows, binary COPY,
  queue completion, one transaction) into the partitioned ``sigs``.
* :func:`wide_prototype`: the same statistics as one row per (obsid, pid, band set) with
  ``stats real[8 x bands]`` and the primary key (obsid, pid, bandset), plus a view in the
  reference ``sigs`` shape, in the same run on the same server: a PROTOTYPE of the design
  that reaches 1 M sigs rows/s (issue-18 research), not the package's schema.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

import numpy as np

_NEXT_OBSID = [1000]

WIDE_VIEW = """CREATE VIEW bench.sigs_wide_view AS
SELECT w.pid, w.obsid, u.band,
       w.stats[u.i * 8 - 7] AS count, w.stats[u.i * 8 - 6] AS mean, w.stats[u.i * 8 - 5] AS std,
       w.stats[u.i * 8 - 4] AS min, w.stats[u.i * 8 - 3] AS max, w.stats[u.i * 8 - 2] AS p25,
       w.stats[u.i * 8 - 1] AS p50, w.stats[u.i * 8] AS p75
FROM bench.sigs_wide w JOIN bench.bandsets bs ON bs.id = w.bandset
CROSS JOIN LATERAL unnest(bs.bands) WITH ORDINALITY AS u(band, i)
WHERE w.stats[u.i * 8 - 7] > 0"""


def write_scenes(url: str, cfg, pids: np.ndarray, bands: list[str], st: np.ndarray, n: int, fp_wkt: str,
                 t0: dt.datetime, epsg: int) -> list[float]:
    """Write ``n`` 10 m scene stages (new scenes, claimed by 'bench'); seconds per scene."""
    from cbm_ops import queue
    from cbm_ops.db import transaction
    from cbm_ops.db.partitions import ensure_partition
    from cbm_ops.extract import writer

    times = []
    for _ in range(n):
        obsid = _NEXT_OBSID[0]
        _NEXT_OBSID[0] += 1
        t_obs = t0 + dt.timedelta(days=5 * (obsid - 999))
        with transaction(url) as conn:
            conn.execute("INSERT INTO bench.dias_catalogue (id, obstime, reference, sensor, card, footprint) "
                         "VALUES (%s, %s, %s, '2B', 's2', ST_GeomFromText(%s, 4326))",
                         (obsid, t_obs, f"S2B_MSIL2A_{t_obs:%Y%m%dT%H%M%S}_N0510_R051_T31UDS_w{obsid}", fp_wkt))
            conn.execute("INSERT INTO bench.scene_stages (obsid, stage, status, lease_owner, lease_expires)"
                         " VALUES (%s, 's2_10m', 'inprogress', 'bench', now() + interval '1 hour')", (obsid,))
        claim = queue.Claim(obsid=obsid, stage="s2_10m", attempts=1, reference=f"w{obsid}", obstime=t_obs,
                            card="s2", product_identifier=None, epsg=epsg, tile=None, processing_baseline=None)
        ta = time.perf_counter()
        part = ensure_partition(url, cfg, obsid)
        with transaction(url) as conn:
            writer.write_stage(conn, cfg, claim, "bench", part, sigs=(pids, bands, [st] * len(bands)), bands=bands,
                               parcels=int(pids.size), seconds=0.0)
        times.append(time.perf_counter() - ta)
    return times


def _wide_payload(pids: np.ndarray, obsid: int, stats: list[np.ndarray]) -> memoryview:
    """Binary COPY tuples (pid, obsid, bandset 1, stats real[8 B]) of one chunk of parcels."""
    nb = 8 * len(stats)
    dt_ = np.dtype([("nfields", ">i2"), ("l_pid", ">i4"), ("pid", ">i4"), ("l_obsid", ">i4"), ("obsid", ">i4"),
                    ("l_bs", ">i4"), ("bs", ">i2"), ("l_arr", ">i4"), ("ndim", ">i4"), ("flags", ">i4"),
                    ("oid", ">i4"), ("dim", ">i4"), ("lb", ">i4"), ("el", [("len", ">i4"), ("v", ">f4")], (nb,))])
    g = np.empty(pids.size, dt_)
    g["nfields"], g["l_pid"], g["pid"], g["l_obsid"], g["obsid"] = 4, 4, pids, 4, obsid
    g["l_bs"], g["bs"], g["l_arr"], g["ndim"], g["flags"], g["oid"] = 2, 1, 20 + nb * 8, 1, 0, 700   # float4
    g["dim"], g["lb"] = nb, 1
    g["el"]["len"] = 4
    g["el"]["v"] = np.concatenate(stats, axis=1)
    return memoryview(g).cast("B")  # type: ignore[arg-type]


def _latency(c, q: str, obsids: list[int], pids: np.ndarray, bands: list[str]) -> list[float]:
    """p50, p95 (ms) of one parcel's rows in ``obsids`` (300 random parcels)."""
    lat = []
    for pid in np.random.default_rng(3).choice(pids, 300, replace=False):
        t0 = time.perf_counter()
        c.execute(q, (obsids, int(pid), bands)).fetchall()
        lat.append((time.perf_counter() - t0) * 1000)
    return [round(float(np.percentile(lat, 50)), 2), round(float(np.percentile(lat, 95)), 2)]


def wide_prototype(url: str, pids: np.ndarray, st: np.ndarray, bands: list[str], n: int,
                   narrow_obsids: list[int], chunk: int = 16384) -> dict:
    """Durable write rate (sigs-row equivalents/s) of the wide-row layout, and one parcel's
    rows through its reference-shaped view against the same query on the narrow ``sigs``
    (``narrow_obsids``: as many scenes written there), p50/p95 of 300 parcels."""
    import psycopg
    from psycopg.copy import QueuedLibpqWriter

    from cbm_ops.extract.writer import PGCOPY_HEADER, PGCOPY_TRAILER

    rows_eq = int((st[:, 0] > 0).sum()) * len(bands)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE bench.bandsets (id smallint PRIMARY KEY, bands char(3)[] NOT NULL)")
        c.execute("INSERT INTO bench.bandsets VALUES (1, %s::char(3)[])", (bands,))
        c.execute("CREATE TABLE bench.sigs_wide (pid integer NOT NULL, obsid integer NOT NULL, bandset smallint "
                  "NOT NULL, stats real[] NOT NULL) PARTITION BY RANGE (obsid)")
        c.execute("CREATE TABLE bench.sigs_wide_p0 PARTITION OF bench.sigs_wide FOR VALUES FROM (0) TO (1000000)")
        c.execute("ALTER TABLE bench.sigs_wide_p0 ADD PRIMARY KEY (obsid, pid, bandset)")
        c.execute(WIDE_VIEW)
    times = []
    keep = st[:, 0] > 0
    p, s = pids[keep], st[keep]
    with psycopg.connect(url) as conn:
        for k in range(n):
            ta = time.perf_counter()
            with conn.transaction():
                conn.execute("DELETE FROM bench.sigs_wide_p0 WHERE obsid = %s AND bandset = 1", (k + 1,))
                cur = conn.cursor()
                with cur.copy("COPY bench.sigs_wide_p0 (pid, obsid, bandset, stats) FROM STDIN (FORMAT binary)",
                              writer=QueuedLibpqWriter(cur)) as cp:
                    cp.write(PGCOPY_HEADER)
                    for i in range(0, p.size, chunk):
                        cp.write(_wide_payload(p[i:i + chunk], k + 1, [s[i:i + chunk]] * len(bands)))
                    cp.write(PGCOPY_TRAILER)
            times.append(time.perf_counter() - ta)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("ANALYZE bench.sigs_wide_p0")
        # the API's shape (api_parcel_sigs.sql): the AOI's scenes, one parcel, its bands
        q = ("SELECT obsid, band, count, mean FROM bench.{t} WHERE obsid = ANY(%s) AND pid = %s "
             "AND band = ANY(%s::bpchar[]) ORDER BY obsid, band")
        obsids = list(range(1, n + 1))
        plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + q.format(t="sigs_wide_view"),
                                                   (obsids, int(p[100]), bands)))
        lat = _latency(c, q.format(t="sigs_wide_view"), obsids, p, bands)
        lat_narrow = _latency(c, q.format(t="sigs"), narrow_obsids, p, bands)
        size = c.execute("SELECT pg_total_relation_size('bench.sigs_wide_p0')").fetchone()[0]  # type: ignore[index]
        c.execute("DROP VIEW bench.sigs_wide_view")
        c.execute("DROP TABLE bench.sigs_wide, bench.bandsets")
    return {"rows_per_s": round(rows_eq / statistics.median(times)),
            "runs_rows_per_s": [round(rows_eq / t) for t in times],
            "sigs_rows_per_scene": rows_eq, "table_rows_per_scene": int(p.size),
            "bytes_per_sigs_row": round(size / (rows_eq * n), 1),
            "parcel_rows_ms_p50_p95": {"wide_view": lat, "narrow_sigs": lat_narrow},
            "view_index_served": "Index" in plan and "Seq Scan on sigs_wide" not in plan,
            "note": "PROTOTYPE, not the package's schema: one row per (obsid, pid, band set), stats real[32], "
                    "PK (obsid, pid, bandset), the reference sigs shape through a view; durable server, same run"}
