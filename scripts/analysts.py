"""Analysts during extraction: a bounded load test of the parcel API, and its 9 M-row AOI.

    python scripts/analysts.py build --db-url URL --aoi FILE.yaml
    python scripts/analysts.py load --url http://HOST:8080 --user admin --password PW --aoi NAME
                                    [--analysts 50] [--think 2] [--duration 60] [--saturate 20]

* :func:`build_aoi`: a SYNTHETIC AOI of the size docs/analyst-api.md measures on: 6,000
  LPIS-like parcels (scripts/synthetic_parcels.py), 125 Sentinel-2 datatakes of 3
  overlapping granules each (375 scenes), every parcel in every granule, 4 bands:
  9,000,000 ``sigs`` rows and 2,250,000 ``hists`` rows, written with the pipeline's own
  catalogue, partition and COPY code (cbm_ops.harvest.catalogue, cbm_ops.db.partitions,
  cbm_ops.extract.writer).
* :func:`load`: ``analysts`` simulated analysts (httpx, asyncio), each with its own login
  token, each asking ``/cbm/query/parcelTimeSeries`` for a random parcel, then thinking an
  exponential time of mean ``think`` seconds (so 50 analysts at 2 s ask ~25 requests/s),
  for ``duration`` seconds; it stops by itself. Latency p50/p95/max, requests/s, errors.
  With ``think`` 0 and fewer clients it measures the saturation throughput.

The load generator talks to the given URL only (loopback or the test network).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT)]

N_PARCELS, DATATAKES, TILES = 6000, 125, ("31UDS", "31UES", "31UDT")
BANDS = ["B02", "B03", "B04", "B08"]
T0 = dt.datetime(2023, 3, 1, 10, 56, 19)


def build_aoi(url: str, cfg, *, n_parcels: int = N_PARCELS, datatakes: int = DATATAKES, seed: int = 7
              ) -> dict[str, Any]:
    """Write the SYNTHETIC 9 M-row AOI into ``cfg.schema`` (see the module docstring).

    Returns
    -------
    dict
        parcels, scenes, sigs_rows, hists_rows, seconds.
    """
    import shapely
    from bench_rasterize import write_gpkg
    from psycopg import sql
    from pyproj import Transformer
    from synthetic_parcels import extent_for, make_parcels

    from cbm_ops import db as cdb
    from cbm_ops.db.partitions import ensure_partition
    from cbm_ops.extract.writer import copy_sigs
    from cbm_ops.harvest import HarvestReport, SceneRecord
    from cbm_ops.harvest.catalogue import upsert
    from cbm_ops.parcels import import_parcels
    from cbm_ops.queue import enqueue

    t0 = time.perf_counter()
    bounds = extent_for(n_parcels, share=0.5)
    x0, y0, x1, y1 = bounds
    geoms = make_parcels(n_parcels, bounds, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        gpkg = Path(tmp) / "parcels.gpkg"
        write_gpkg(gpkg, geoms)
        cdb.ensure_schema(url, cfg.schema)
        cfg = cfg.model_copy(update={"parcels": cfg.parcels.model_copy(update={"source": str(gpkg)})})
        rep = import_parcels(url, cfg)
    tr = Transformer.from_crs(32631, 4326, always_xy=True)
    box = shapely.box(x0 - 1000, y0 - 1000, x1 + 1000, y1 + 1000)
    fp = shapely.transform(shapely.segmentize(box, 1000), lambda xy: np.column_stack(tr.transform(*xy.T)))
    fp_wkt = shapely.multipolygons([fp]).wkt
    recs = []
    for k in range(datatakes):
        t = T0 + dt.timedelta(days=2 * k + (k % 3) / 10)
        for j, tile in enumerate(TILES):
            ref = f"S2B_MSIL2A_{t:%Y%m%dT%H%M%S}_N0510_R051_T{tile}_{t:%Y%m%d}T{130000 + j:06d}"
            recs.append(SceneRecord(reference=ref, obstime=t, sensor="2B", card="s2", footprint_wkt=fp_wkt, tile=tile,
                                    epsg=32631, relative_orbit=51, orbit_direction="DESCENDING",
                                    processing_baseline="05.10", cloud_cover=10.0,
                                    product_identifier=f"/eodata/Sentinel-2/MSI/L2A/{t:%Y/%m/%d}/{ref}.SAFE",
                                    catalogue_id=None, source="synthetic"))
    with cdb.transaction(url) as conn:
        upsert(conn, cfg.schema, recs, HarvestReport())
        enqueue(conn, cfg)
        schema = sql.Identifier(cfg.schema)
        obsids = [r[0] for r in conn.execute(sql.SQL("SELECT id FROM {}.dias_catalogue ORDER BY id").format(schema))]
        pids = np.array(sorted(r[0] for r in conn.execute(sql.SQL("SELECT ogc_fid FROM {}.{}").format(
            schema, sql.Identifier(cfg.parcels.table)))), dtype=np.int32)
    rng = np.random.default_rng(seed)
    n_sigs = n_hists = 0
    for obsid in obsids:
        part = ensure_partition(url, cfg, obsid)
        stats = []
        for _band in BANDS:
            m = rng.uniform(300, 4000, pids.size)
            s = np.column_stack([rng.integers(20, 500, pids.size), m, m * 0.1, m * 0.7, m * 1.3, m * 0.9, m, m * 1.1])
            stats.append(s.astype(np.float64))
        with cdb.transaction(url) as conn:
            n_sigs += copy_sigs(conn, cfg.schema, part.sigs, pids, obsid, BANDS, stats)
            with conn.cursor().copy(sql.SQL("COPY {}.{} (pid, obsid, hist) FROM STDIN").format(
                    schema, sql.Identifier(part.hists))) as cp:
                for p, c in zip(pids.tolist(), rng.integers(0, 30, pids.size).tolist(), strict=True):
                    cp.write_row((p, obsid, json.dumps({"4": 100 - c, "9": c} if c else {"4": 100})))
            n_hists += pids.size
            conn.execute(sql.SQL("UPDATE {}.scene_stages SET status = 'extracted', rows = 0 WHERE obsid = %s"
                                 ).format(schema), (obsid,))
    with cdb.transaction(url) as conn:
        conn.execute(sql.SQL("UPDATE {}.dias_catalogue SET status = 'extracted'").format(schema))
    with cdb.connect(url, autocommit=True) as conn:
        for table in ("dias_catalogue", "sigs", "hists"):
            conn.execute(sql.SQL("ANALYZE {}.{}").format(schema, sql.Identifier(table)))
    return {"parcels": rep.parcels, "scenes": len(obsids), "sigs_rows": n_sigs, "hists_rows": n_hists,
            "seconds": round(time.perf_counter() - t0, 1)}


def _pcts(lat: list[float]) -> dict[str, float | None]:
    if not lat:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None}
    s = sorted(lat)
    return {"p50_ms": round(statistics.median(s) * 1000, 1), "p95_ms": round(s[int(0.95 * (len(s) - 1))] * 1000, 1),
            "max_ms": round(s[-1] * 1000, 1)}


async def _run(url: str, user: str, password: str, aoi: str, pids: list[int], clients: int, think: float,
               duration: float, seed: int) -> dict[str, Any]:
    import httpx

    # simulated analysts' choices and think times, not secrets
    rnd = random.Random(seed)  # nosec B311
    lat: list[float] = []
    errors: list[str] = []
    rows = 0
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        async def login() -> str:
            r = await client.post("/auth/token", json={"username": user, "password": password})
            r.raise_for_status()
            return r.json()["access_token"]

        tokens = await asyncio.gather(*(login() for _ in range(clients)))
        t_start = time.monotonic()
        stop_at = t_start + duration

        async def analyst(k: int) -> None:
            nonlocal rows
            head = {"Authorization": f"Bearer {tokens[k]}"}
            if think:
                await asyncio.sleep(rnd.uniform(0, think))
            while time.monotonic() < stop_at:
                t = time.monotonic()
                try:
                    r = await client.get("/cbm/query/parcelTimeSeries", headers=head,
                                         params={"aoi": aoi, "pid": rnd.choice(pids), "tstype": "s2"})
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}: {r.text[:120]}")
                    else:
                        rows += len(r.json().get("band", []))
                        lat.append(time.monotonic() - t)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                if think:
                    await asyncio.sleep(min(rnd.expovariate(1 / think), max(stop_at - time.monotonic(), 0)))

        await asyncio.gather(*(analyst(k) for k in range(clients)))
        wall = time.monotonic() - t_start
    return {"clients": clients, "think_s": think, "duration_s": round(wall, 1), "requests": len(lat) + len(errors),
            "ok": len(lat), "errors": len(errors), "error_samples": errors[:5],
            "requests_per_s": round(len(lat) / wall, 1), "rows_per_answer": round(rows / len(lat)) if lat else 0,
            **_pcts(lat)}


def load(url: str, user: str, password: str, aoi: str, pids: list[int], *, analysts: int = 50,
         think: float = 2.0, duration: float = 60.0, seed: int = 11) -> dict[str, Any]:
    """The load test (see the module docstring); returns its figures.

    Returns
    -------
    dict
        clients, think_s, duration_s, requests, ok, errors, error_samples, requests_per_s,
        rows_per_answer, p50_ms, p95_ms, max_ms.
    """
    return asyncio.run(_run(url, user, password, aoi, pids, analysts, think, duration, seed))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["build", "load"])
    ap.add_argument("--db-url")
    ap.add_argument("--aoi", required=True, help="build: the AOI file; load: the AOI name")
    ap.add_argument("--url")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password")
    ap.add_argument("--analysts", type=int, default=50)
    ap.add_argument("--think", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--saturate", type=float, default=0.0, help="seconds of a no-think-time run after the load")
    ap.add_argument("--pids", type=int, default=N_PARCELS, help="pids 1..N are asked for")
    args = ap.parse_args(argv)
    if args.action == "build":
        from cbm_ops.config import load_aoi

        print(json.dumps(build_aoi(args.db_url, load_aoi(args.aoi))))
        return 0
    pids = list(range(1, args.pids + 1))
    print(json.dumps(load(args.url, args.user, args.password, args.aoi, pids, analysts=args.analysts,
                          think=args.think, duration=args.duration)))
    if args.saturate:
        print(json.dumps(load(args.url, args.user, args.password, args.aoi, pids, analysts=8, think=0.0,
                              duration=args.saturate)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
