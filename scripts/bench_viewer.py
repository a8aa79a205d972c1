"""Parcel viewer tiles at scale (`make bench`, section "viewer"; or standalone).

Times :func:`cbm_ops.analyst.viewer.parcel_tile` (one ``ST_AsMVT`` statement with the colour
attributes of a year, what the API runs on a tile-cache miss) on random tiles covering a
200,000-parcel AOI at the zoom levels where the viewer draws parcels (12-14; the page
overzooms zoom-14 tiles beyond), from the year's summary (after a timed
:func:`cbm_ops.analyst.viewer.refresh_summary`) and with the attributes computed live, in two states
of the same AOI:

1. as ``make bench`` leaves it (one full S2 scene with SCL histograms and bands, about a
   dozen more S2 scenes with 10 m bands, S1 scenes);
2. a SYNTHETIC year of Sentinel-2 observations added: ``--dates`` (default 73, a 5-day revisit
   of two satellites) datatakes over the whole tile, each with an SCL histogram for every parcel
   (a random share of the parcels cloudy per date) and four 10 m bands.

Standalone (its own throwaway PostGIS and the bench's SYNTHETIC LPIS-like parcels)::

    python scripts/bench_viewer.py [--parcels 200000] [--dates 73] [--tiles 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

ZOOMS = (12, 13, 14)
YEAR = 2023
TARGET_MS = 100.0


def add_s2_year(url: str, cfg, pids: np.ndarray, stats: np.ndarray, fp_wkt: str, *, dates: int, year: int = YEAR,
                seed: int = 7) -> int:
    """Add ``dates`` SYNTHETIC S2 datatakes of ``year`` (SCL histograms and B02 B03 B04 B08 for
    every parcel of ``pids``); returns the rows written."""
    from cbm_ops.db import q, transaction
    from cbm_ops.db.partitions import ensure_partition
    from cbm_ops.extract import writer
    from cbm_ops.grid import kernels
    from cbm_ops.harvest import HarvestReport, SceneRecord, upsert

    rng = np.random.default_rng(seed)
    bands = ["B02", "B03", "B04", "B08"]
    pids = pids.astype(np.int32)
    pixels = rng.integers(12, 120, pids.size).astype(np.int32)        # 20 m pixels per parcel
    rows = 0
    t0 = dt.datetime(year, 1, 2, 10, 40, 31)
    for k in range(dates):
        t = t0 + dt.timedelta(days=5 * k)
        name = f"S2A_MSIL2A_{t:%Y%m%dT%H%M%S}_N0510_R051_T31UDS_{t:%Y%m%d}T130000"
        with transaction(url) as conn:
            ids = upsert(conn, cfg.schema, [SceneRecord(
                reference=name, obstime=t, sensor="2A", card="s2", footprint_wkt=fp_wkt, tile="31UDS", epsg=32631,
                relative_orbit=51, orbit_direction="DESCENDING", processing_baseline="05.10", cloud_cover=None,
                product_identifier=f"/eodata/synthetic/{name}.SAFE", catalogue_id=None, source="bench")],
                HarvestReport())
        if not ids:
            continue                                                  # already there (a rerun)
        obsid = ids[0]
        cloudy = rng.random(pids.size) < rng.beta(0.7, 0.9)           # share of cloudy parcels this date
        counts = np.zeros((pids.size, 12), np.int32)
        counts[:, 4] = np.where(cloudy, pixels // 4, pixels)
        counts[:, 9] = np.where(cloudy, pixels - pixels // 4, 0)
        text, n = kernels.hist_copy_text(pids, obsid, counts)
        part = ensure_partition(url, cfg, obsid)
        with transaction(url) as conn:
            rows += writer.copy_sigs(conn, cfg.schema, part.sigs, pids, obsid, bands, [stats] * 4)
            with conn.cursor().copy(q("hists_copy", schema=cfg.schema, part=part.hists)) as cp:
                cp.write(bytes(text))
            rows += n
    return rows


def measure(url: str, cfg, emit: Callable[..., None], state: str, *, n_tiles: int = 60, n_live: int = 15,
            year: int = YEAR, seed: int = 5) -> dict[str, dict]:
    """Refresh the year's summary (timed), then p50/p95 of cold tiles (each tile once, no tile
    cache) at each zoom of :data:`ZOOMS`: ``n_tiles`` from the summary (what the viewer serves),
    ``n_live`` with the attributes computed live (the fallback without a summary)."""
    import mapbox_vector_tile
    import psycopg
    from psycopg import sql

    from cbm_ops.analyst import viewer
    from cbm_ops.db import transaction

    schema, table = sql.Identifier(cfg.schema), sql.Identifier(cfg.parcels.table)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(sql.SQL("ANALYZE {}.dias_catalogue").format(schema))
        c.execute(sql.SQL("ANALYZE {}.{}").format(schema, table))
        row = c.execute(sql.SQL("""SELECT count(*) FROM {}.dias_catalogue
                                   WHERE card = 's2' AND obstime >= %s AND obstime < %s""").format(schema),
                        (dt.datetime(year, 1, 1), dt.datetime(year + 1, 1, 1))).fetchone()
    s2 = row[0] if row else 0
    done = viewer.refresh_summary(url, cfg, year)
    assert done is not None
    emit(f"viewer_summary_refresh_{state}", done["seconds"], "s", parcels=done["parcels"], s2_scenes_in_year=s2,
         note="cbm_ops.analyst.viewer.refresh_summary: one pass over the year's S2 sigs and hists (canonical rule), "
              "run in the background by the API when results changed (at most every 30 min)")
    with transaction(url) as conn:
        srid = viewer.parcel_srid(conn, cfg)
        extent = viewer.parcel_extent(conn, cfg, srid)
    assert extent is not None
    # where an analyst looks: the tiles holding random parcels (by their centroid), each tile once
    with psycopg.connect(url) as c:
        points = c.execute(sql.SQL("""SELECT ST_X(p), ST_Y(p) FROM (
                                   SELECT ST_Transform(ST_PointOnSurface(wkb_geometry), 4326) AS p
                                   FROM {}.{} ORDER BY md5(ogc_fid::text || %s)
                                   LIMIT %s) s""").format(schema, table),
                           (str(seed), 4 * n_tiles)).fetchall()
    out: dict[str, dict] = {}
    for z in ZOOMS:
        pick = list(dict.fromkeys(viewer.lonlat_to_tile(lon, lat, z) for lon, lat in points))[:n_tiles]
        lat = viewer.tile_latency(url, cfg, [(z, x, y) for x, y in pick], year)
        with transaction(url) as conn:
            feats = [len(mapbox_vector_tile.decode(viewer.parcel_tile(conn, cfg, z, x, y, year, srid, extent))
                         .get("parcels", {}).get("features", [])) for x, y in pick[:9]]
        parcels = int(np.median(feats))
        out[f"z{z}"] = {**lat, "parcels_per_tile": parcels}
        emit(f"viewer_tile_z{z}_{state}", lat["p95_ms"], "ms", f"p95 <= {TARGET_MS:.0f} ms",
             lat["p95_ms"] <= TARGET_MS, p50_ms=lat["p50_ms"], max_ms=lat["max_ms"], tiles=lat["tiles"],
             bytes_median=lat["bytes_median"], parcels_per_tile_median=parcels, s2_scenes_in_year=s2,
             note="cbm_ops.analyst.viewer.parcel_tile as the API runs it on a tile-cache miss (read-only "
                  "transaction, one ST_AsMVT statement: crop, the year's summary of canonical S2 observations / "
                  f"cloud-free dates / last cloud-free date, quarantined scenes of {year}); the tiles of random "
                  "parcels of the 200k-parcel AOI, each once")
        live = viewer.tile_latency(url, cfg, [(z, x, y) for x, y in pick[:n_live]], year, live=True)
        out[f"live_z{z}"] = live
        emit(f"viewer_tile_live_z{z}_{state}", live["p95_ms"], "ms", p50_ms=live["p50_ms"], max_ms=live["max_ms"],
             tiles=live["tiles"], s2_scenes_in_year=s2,
             note="the same tiles with the attributes computed live from sigs and hists (the fallback before a "
                  "summary exists or for a read-only role): a key probe per parcel and scene")
    return out


def viewer_section(url: str, cfg, emit: Callable[..., None], pids: np.ndarray, stats: np.ndarray, fp_wkt: str, *,
                   dates: int = 73, n_tiles: int = 60) -> None:
    """Both states of the AOI (see the module docstring)."""
    measure(url, cfg, emit, "bench_aoi", n_tiles=n_tiles)
    t0 = time.perf_counter()
    rows = add_s2_year(url, cfg, pids, stats, fp_wkt, dates=dates)
    emit("viewer_synthetic_year_added", round(time.perf_counter() - t0, 1), "s", rows=rows, dates=dates,
         note="SYNTHETIC: SCL histograms and 4 bands for every parcel on each date")
    measure(url, cfg, emit, f"year_of_{dates}_s2_dates", n_tiles=n_tiles)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parcels", type=int, default=200_000)
    ap.add_argument("--dates", type=int, default=73)
    ap.add_argument("--tiles", type=int, default=60)
    ap.add_argument("--live-tiles", type=int, default=15)
    args = ap.parse_args()
    import shapely
    from bench_rasterize import write_gpkg
    from pyproj import Transformer
    from synthetic_parcels import TILE_BOUNDS, make_parcels

    from cbm_ops.config import AoiConfig
    from cbm_ops.db.devdb import TempPostgis
    from cbm_ops.parcels import import_parcels

    def emit(metric, value, unit, target=None, met=None, **extra):
        print(json.dumps({"metric": metric, "value": value, "unit": unit,
                          **({"target": target, "met": met} if target else {}), **extra}), flush=True)

    out = ROOT / "bench-output"
    out.mkdir(exist_ok=True)
    gpkg = out / f"viewer-parcels-{args.parcels}.gpkg"
    if not gpkg.exists():
        write_gpkg(gpkg, make_parcels(args.parcels, TILE_BOUNDS))
    pg = TempPostgis.start(dbname="cbm_bench_viewer")
    try:
        cfg = AoiConfig.model_validate({"name": "bench", "schema": "bench", "start_date": dt.date(2023, 1, 1),
                                        "cards": ["s2"], "parcels": {"source": str(gpkg)}})
        rep = import_parcels(pg.url, cfg)
        x0, y0, x1, y1 = TILE_BOUNDS
        tr = Transformer.from_crs(32631, 4326, always_xy=True)
        fp = shapely.transform(shapely.segmentize(shapely.box(x0, y0, x1, y1), 5000),
                               lambda xy: np.column_stack(tr.transform(*xy.T)))
        pids = np.arange(1, rep.parcels + 1, dtype=np.int32)
        stats = np.random.default_rng(1).uniform(300, 4000, (pids.size, 8)).astype(np.float32)
        t0 = time.perf_counter()
        rows = add_s2_year(pg.url, cfg, pids, stats, shapely.multipolygons([fp]).wkt, dates=args.dates)
        emit("viewer_synthetic_year_added", round(time.perf_counter() - t0, 1), "s", rows=rows, dates=args.dates)
        measure(pg.url, cfg, emit, f"year_of_{args.dates}_s2_dates", n_tiles=args.tiles, n_live=args.live_tiles)
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
