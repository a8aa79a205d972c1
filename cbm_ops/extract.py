"""Parcel extraction: scenes from the queue to sigs/hists, and a notebook-level API.

:func:`run_queue` claims the pending scenes of an AOI stage one at a time, processes each
(:func:`process_claim`) and records the outcome; ``python -m cbm_ops extract`` and the
Airflow tasks call it. For every band the scene's image window that the parcels need is
decoded once, the parcel index of its grid (stored lattice or rasterized for the scene)
selects the pixels, the Numba kernels compute the statistics, and the stage's rows are
written in one transaction (:mod:`cbm_ops.writer`).

:func:`zonal_stats` gives the same statistics for any raster and shapely geometries.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
from collections import Counter
from typing import Any

import numpy as np
import psycopg

from . import kernels, queue, writer
from .config import STAGES, AoiConfig
from .db import transaction
from .rasterize import Grid, GridError, ParcelIndex, build_index, index_for_grid
from .scenes import BandFile, SceneError, band_files
from .store import MountStore, S3Store, make_store, product_path

log = logging.getLogger(__name__)


def _epsg(ds) -> int:
    if ds.crs is None:
        raise SceneError("Grid error", f"{ds.name}: no CRS", retryable=False)
    epsg = ds.crs.to_epsg() or ds.crs.to_epsg(confidence_threshold=30)
    if not epsg:
        raise SceneError("Grid error", f"{ds.name}: CRS has no EPSG code: {ds.crs.to_wkt()[:200]}",
                         retryable=False)
    return int(epsg)


def _window(ds_grid: Grid, idx: ParcelIndex) -> tuple[Any, int, int] | None:
    """Image window covering the indexed parcels, and its (row, col) in the index grid."""
    from rasterio.windows import Window

    r_off, c_off = ds_grid.offset_in(idx.grid)
    pr0, pr1, pc0, pc1 = idx.row_range()
    row0, row1 = max(pr0 - r_off, 0), min(pr1 - r_off, ds_grid.height)
    col0, col1 = max(pc0 - c_off, 0), min(pc1 - c_off, ds_grid.width)
    if row1 <= row0 or col1 <= col0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0), r_off + row0, c_off + col0


def read_band(path: str, bf: BandFile, url: str, cfg: AoiConfig
              ) -> tuple[np.ndarray | None, int, int, ParcelIndex, float | None]:
    """Decode the window of one band that the AOI's parcels need.

    Returns
    -------
    (array or None, int, int, ParcelIndex, float or None)
        Window array (native dtype, None when no parcel lies in the image), its grid
        row/col, the parcel index of the image's grid, and the nodata value.

    Raises
    ------
    SceneError
        ``Read error`` (retryable) when the file cannot be decoded, ``Grid error`` when
        its grid is unusable.
    """
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as ds:
            grid = Grid.from_raster(_epsg(ds), ds.transform, ds.width, ds.height)
            idx = index_for_grid(url, cfg, grid)
            win = _window(grid, idx)
            nodata = ds.nodatavals[bf.index - 1]
            if nodata is None:
                nodata = bf.nodata
            if win is None:
                return None, 0, 0, idx, nodata
            window, r0, c0 = win
            arr = ds.read(bf.index, window=window)
            return arr, r0, c0, idx, nodata
    except GridError as exc:
        raise SceneError("Grid error", f"{bf.band}: {exc}", retryable=False) from None
    except RasterioError as exc:
        raise SceneError("Read error", f"{bf.band}: {exc}", retryable=True) from None


def process_claim(url: str, cfg: AoiConfig, claim: queue.Claim, owner: str,
                  store: MountStore | S3Store) -> dict[str, Any]:
    """Extract one claimed scene stage and store its rows (one transaction).

    Returns
    -------
    dict
        reference, stage, status, parcels, rows and timings (s): read, stats, write, total.

    Raises
    ------
    SceneError
        Named failures (missing file, decode error, bad metadata, grid error).
    queue.LeaseLost
        Another worker took the scene over; nothing was written.
    """
    t0 = time.perf_counter()
    kind = STAGES[claim.stage][1]
    rel = product_path(claim.product_identifier, claim.reference, claim.card, claim.obstime)
    t_read = t_stats = 0.0
    renewed = t0
    files: list[BandFile] = []
    stats: list[np.ndarray] = []
    codes: list[str] = []
    pids: np.ndarray | None = None
    hists: tuple[bytes, int] | None = None
    has_data: np.ndarray | None = None      # per parcel of the stage's index: any valid pixel
    try:
        with store.product(rel) as prod:
            files, offsets = band_files(prod, cfg, claim.stage, claim.card, claim.reference,
                                        claim.processing_baseline)
            for bf in files:
                ta = time.perf_counter()
                for comp in bf.companions:
                    prod.local(comp)
                arr, r0, c0, idx, nodata = read_band(prod.local(bf.rel), bf, url, cfg)
                tb = time.perf_counter()
                t_read += tb - ta
                if arr is None:
                    continue
                args = (arr, r0, c0, idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1)
                if kind == "hist":
                    nclasses = int(arr.max()) + 1 if arr.size else 1
                    counts = kernels.parcel_histograms(*args, nclasses, int(nodata or 0), nodata is not None)
                    hists = kernels.hist_copy_text(idx.pids, claim.obsid, counts)
                    valid = counts.sum(axis=1) > 0
                else:
                    st = kernels.parcel_stats(*args, idx.max_pixels, nodata)
                    if bf.offset:
                        st[:, [1, 3, 4, 5, 6, 7]] += bf.offset   # all but count and std
                    if pids is not None and pids is not idx.pids and not np.array_equal(pids, idx.pids):
                        raise SceneError("Grid error", f"{bf.band}: bands of one stage on different parcel "
                                         "indexes", retryable=False)
                    pids = idx.pids
                    stats.append(st)
                    codes.append(bf.band)
                    valid = st[:, 0] > 0
                has_data = valid if has_data is None else has_data | valid
                t_stats += time.perf_counter() - tb
                del arr
                if time.perf_counter() - renewed > cfg.lease_minutes * 20:   # a third of the lease
                    with transaction(url) as conn:
                        queue.extend_lease(conn, cfg, claim, owner)
                    renewed = time.perf_counter()
    except FileNotFoundError as exc:
        raise SceneError("No file", str(exc), retryable=True) from None
    n_parcels = int(has_data.sum()) if has_data is not None else 0
    tw = time.perf_counter()
    with transaction(url) as conn:
        n_rows = writer.write_stage(
            conn, cfg, claim, owner, sigs=(pids, codes, stats) if kind == "stats" and stats else None,
            hists=(hists or (b"", 0)) if kind == "hist" else None, bands=[b.band for b in files],
            offsets=offsets or None, parcels=n_parcels, seconds=time.perf_counter() - t0)
    total = time.perf_counter() - t0
    result = {"obsid": claim.obsid, "reference": claim.reference, "stage": claim.stage,
              "status": queue.EXTRACTED if n_rows else queue.NO_PARCELS,
              "parcels": n_parcels, "rows": n_rows, "read_s": round(t_read, 3),
              "stats_s": round(t_stats, 3), "write_s": round(time.perf_counter() - tw, 3),
              "seconds": round(total, 3)}
    log.info("scene %s %s: %s, %d parcels, %d rows, %.2f s (read %.2f, stats %.2f, write %.2f)",
             claim.reference, claim.stage, result["status"], result["parcels"], n_rows, total,
             result["read_s"], result["stats_s"], result["write_s"])
    return result


def run_queue(url: str, cfg: AoiConfig, stage: str, *, start: dt.datetime | None = None,
              end: dt.datetime | None = None, limit: int | None = None, obsids: list[int] | None = None,
              owner_label: str = "", store: MountStore | S3Store | None = None) -> dict[str, Any]:
    """Claim and process pending scenes of one stage until none is left.

    Parameters
    ----------
    url : str
        Database URL.
    cfg : AoiConfig
    stage : str
        ``scl``, ``s2_10m``, ``s2_20m``, ``bs`` or ``c6``.
    start, end : datetime, optional
        Only scenes sensed in ``[start, end)``.
    limit : int, optional
        Stop after this many scenes.
    obsids : list of int, optional
        Only these scenes (an Airflow batch); already finished ones are skipped.
    owner_label : str, optional
        Stable name of the caller (Airflow ``dag/run/task/map_index``); a retry with the
        same label takes over the scenes its crashed predecessor still had leased.
    store : optional
        Scene store (default: from the AOI configuration and environment).

    Returns
    -------
    dict
        scenes, rows, parcels, seconds, scenes by status, and per-scene results.

    Raises
    ------
    psycopg.OperationalError
        If the database becomes unreachable (the claimed scene's lease will expire).
    """
    if stage not in cfg.stages:
        log.info("%s: stage %s is not configured, nothing to do", cfg.name, stage)
        return {"stage": stage, "scenes": 0, "rows": 0, "by_status": {}, "results": []}
    store = store or make_store(cfg)
    owner = queue.new_owner(owner_label)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    by_status: Counter[str] = Counter()
    while limit is None or len(results) < limit:
        with transaction(url) as conn:
            claims = queue.claim(conn, cfg, stage, owner, n=1, obsids=obsids, start=start, end=end,
                                 steal_prefix=f"{owner_label}@" if owner_label else None)
        if not claims:
            break
        c = claims[0]
        try:
            res = process_claim(url, cfg, c, owner, store)
        except SceneError as exc:
            res = _record_failure(url, cfg, c, owner, exc.status, str(exc), exc.retryable)
        except queue.LeaseLost as exc:
            log.warning("%s", exc)
            res = {"obsid": c.obsid, "reference": c.reference, "stage": stage, "status": "lease lost"}
        except psycopg.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - record it on the scene, go on with the next
            log.exception("scene %s %s failed", c.reference, stage)
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            res = _record_failure(url, cfg, c, owner, "Failed", detail, True)
        results.append(res)
        by_status[res["status"]] += 1
    seconds = time.perf_counter() - t0
    rows = sum(r.get("rows", 0) for r in results)
    summary = {"stage": stage, "scenes": len(results), "rows": rows,
               "parcels": sum(r.get("parcels", 0) for r in results),
               "seconds": round(seconds, 2), "by_status": dict(by_status),
               "scenes_per_min": round(len(results) / seconds * 60, 1) if results and seconds else 0.0,
               "results": results}
    log.info("%s %s: %d scenes %s, %d rows in %.1f s", cfg.name, stage, len(results), dict(by_status),
             rows, seconds)
    return summary


def _record_failure(url: str, cfg: AoiConfig, c: queue.Claim, owner: str, status: str, message: str,
                    retryable: bool) -> dict[str, Any]:
    log.warning("scene %s %s: %s (%s): %s", c.reference, c.stage, status,
                "retryable" if retryable else "permanent", message)
    with transaction(url) as conn:
        queue.fail(conn, cfg, c, owner, status, message, retryable=retryable)
    return {"obsid": c.obsid, "reference": c.reference, "stage": c.stage, "status": status,
            "error": message, "rows": 0, "parcels": 0}


# --------------------------------------------------------------------------- notebooks
def zonal_stats(raster_path: str, geometries: Any, *, band: int = 1, nodata: float | None = None,
                all_touched: bool = False) -> list[dict[str, float | None]]:
    """Per-geometry statistics of one raster band, with the pipeline's definitions.

    Parameters
    ----------
    raster_path : str
        Any raster GDAL reads (GeoTIFF, JP2, ENVI ...), north-up; square or non-square
        pixels.
    geometries : sequence of shapely geometries, length G
        Polygons in the raster's CRS.
    band : int
        1-based band index.
    nodata : float, optional
        Value masked per pixel; default the band's declared nodata. NaN is always masked.
    all_touched : bool
        GDAL's all-touched rule instead of the pixel-centre rule.

    Returns
    -------
    list of dict, length G
        ``count``, ``mean``, ``std`` (ddof 0), ``min``, ``max``, ``p25``, ``p50``, ``p75``
        (numpy 'linear' percentiles) in the band's units; ``count`` 0 and the others
        ``None`` for a geometry without valid pixels. Same definitions as rasterstats
        ``zonal_stats(..., stats="count mean std min max percentile_25 percentile_50
        percentile_75")``.

    Raises
    ------
    rasterio.errors.RasterioIOError
        If the raster cannot be opened.
    GridError
        If the raster is rotated, sheared or not north-up.
    """
    import gc
    import os
    from concurrent.futures import ThreadPoolExecutor

    import rasterio
    import shapely
    from rasterio.windows import Window

    geoms = np.asarray(list(geometries), dtype=object)
    if geoms.size == 0:
        return []
    threads = os.environ.get("GDAL_NUM_THREADS", "ALL_CPUS")
    with rasterio.Env(GDAL_NUM_THREADS=threads), rasterio.open(raster_path) as ds:
        full = Grid.from_raster(0, ds.transform, ds.width, ds.height)
        minx, miny, maxx, maxy = shapely.total_bounds(geoms)
        c0 = max(int(np.floor((minx - full.x0) / full.res)) - 1, 0)
        r0 = max(int(np.floor((full.y0 - maxy) / full.res_y)) - 1, 0)
        c1 = min(int(np.ceil((maxx - full.x0) / full.res)) + 1, full.width)
        r1 = min(int(np.ceil((full.y0 - miny) / full.res_y)) + 1, full.height)
        if c1 <= c0 or r1 <= r0:
            return [dict.fromkeys(kernels.STAT_NAMES) | {"count": 0} for _ in geoms]
        if nodata is None:
            nodata = ds.nodatavals[band - 1]
        # the index is built on the raster's own grid (GDAL's pixel coordinates, exact
        # ties) while the window the geometries need is decoded (both release the GIL)
        with ThreadPoolExecutor(1) as ex:
            fut = ex.submit(build_index, np.arange(geoms.size), geoms, full, all_touched=all_touched)
            arr = ds.read(band, window=Window(c0, r0, c1 - c0, r1 - r0))
            idx = fut.result()
    st = kernels.parcel_stats(arr, r0, c0, idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1,
                              idx.max_pixels, nodata)
    names = ("mean", "std", "min", "max", "p25", "p50", "p75")
    counts = st[:, 0].astype(np.int64).tolist()
    rows = st[:, 1:].tolist()
    none = dict.fromkeys(names)
    out: list[dict[str, float | None]] = []
    gc_was_on = gc.isenabled()
    gc.disable()                    # 200k small dicts: the cyclic GC would only slow this down
    try:
        for n, row in zip(counts, rows, strict=True):
            rec: dict[str, float | None] = {"count": n}
            rec.update(zip(names, row, strict=True) if n else none)
            out.append(rec)
    finally:
        if gc_was_on:
            gc.enable()
    return out
