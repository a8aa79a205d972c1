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
import os
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from . import kernels, lineage, quality, queue, writer
from .config import STAGES, AoiConfig
from .db import is_connection_lost
from .partitions import ensure_partition
from .rasterize import Grid, GridError, ParcelIndex, build_index, index_for_grid
from .runtime import configure_threads
from .scenes import BandFile, SceneError, band_files
from .store import MountStore, S3Store, StorePathError, make_store, product_path

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


@dataclass
class BandRead:
    """One decoded band window and what it is aligned to.

    Attributes
    ----------
    arr : ndarray, shape (H, W), native dtype, or None
        The window the indexed parcels need (None: no parcel lies in the image).
    r0, c0 : int
        Grid row/column of ``arr[0, 0]`` in the index grid.
    idx : ParcelIndex
    nodata : float or None
    bounds : (minx, miny, maxx, maxy)
        The image's extent, metres of its CRS.
    epsg : int
    """

    arr: np.ndarray | None
    r0: int
    c0: int
    idx: ParcelIndex
    nodata: float | None
    bounds: tuple[float, float, float, float]
    epsg: int


def check_raw_size(ds, path: str) -> None:
    """Refuse a raw raster (ENVI ``.img``) shorter than its header says.

    GDAL's ENVI driver zero-fills what is missing, so a truncated or still-copying file
    would otherwise give plausible-looking, wrong statistics.

    Raises
    ------
    SceneError
        ``Truncated file`` (retryable: the copy may still be in progress).
    """
    if ds.driver != "ENVI":
        return
    tags = ds.tags(ns="ENVI")
    offset = int(float(tags.get("header_offset", 0) or 0))
    itemsize = np.dtype(ds.dtypes[0]).itemsize
    expected = offset + ds.width * ds.height * ds.count * itemsize
    actual = os.path.getsize(path)
    if actual < expected:
        raise SceneError("Truncated file", f"{os.path.basename(path)}: {actual} bytes, its header implies "
                         f"{expected} ({ds.width} x {ds.height} x {ds.count} x {itemsize} + {offset})",
                         retryable=True)


def read_band(path: str, bf: BandFile, url: str, cfg: AoiConfig, footprint: bytes | None = None,
              obsid: int | None = None) -> BandRead:
    """Decode the window of one band that the AOI's parcels need.

    Parameters
    ----------
    path : str
        Local band file.
    footprint : bytes, optional
        The scene's catalogue footprint (EPSG:4326 WKB): scenes off the stored lattices
        load only the parcels inside it.

    Returns
    -------
    BandRead

    Raises
    ------
    SceneError
        ``Read error`` (retryable) when the file cannot be decoded, ``Truncated file``
        (retryable) when a raw file is shorter than its header, ``Grid error`` when its
        grid is unusable.
    """
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as ds:
            check_raw_size(ds, path)
            epsg = _epsg(ds)
            grid = Grid.from_raster(epsg, ds.transform, ds.width, ds.height)
            idx = index_for_grid(url, cfg, grid, footprint, obsid)
            win = _window(grid, idx)
            nodata = ds.nodatavals[bf.index - 1]
            if nodata is None:
                nodata = bf.nodata
            bounds = tuple(ds.bounds)
            if win is None:
                return BandRead(None, 0, 0, idx, nodata, bounds, epsg)
            window, r0, c0 = win
            arr = ds.read(bf.index, window=window)
            return BandRead(arr, r0, c0, idx, nodata, bounds, epsg)
    except GridError as exc:
        raise SceneError("Grid error", f"{bf.band}: {exc}", retryable=False) from None
    except RasterioError as exc:
        raise SceneError("Read error", f"{bf.band}: {exc}", retryable=True) from None


def _footprint_in(footprint: bytes | None, epsg: int):
    """The catalogue footprint (EPSG:4326 WKB) in a UTM EPSG (shapely), or None."""
    if not footprint:
        return None
    import shapely
    from pyproj import Transformer

    tr = Transformer.from_crs(4326, epsg, always_xy=True)
    geom = shapely.segmentize(shapely.from_wkb(footprint), 0.05)      # degrees, follow the projection
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def process_claim(url: str, cfg: AoiConfig, claim: queue.Claim, owner: str,
                  store: MountStore | S3Store, session: queue.Session) -> dict[str, Any]:
    """Extract one claimed scene stage, pass it through the quality gate and store its rows.

    The rows and the stage's new state are written in one transaction on the worker's
    ``session`` (:mod:`cbm_ops.writer`); a stage that fails the gate
    (:mod:`cbm_ops.quality`) is stored ``Quarantined`` without rows.

    Returns
    -------
    dict
        obsid, reference, stage, status, parcels, rows and timings (s): read, stats,
        write, total.

    Raises
    ------
    SceneError
        Named failures (missing or truncated file, decode error, bad metadata, grid error).
    queue.LeaseLost
        Another worker took the scene over; nothing was written.
    psycopg.OperationalError
        The database connection failed (the caller retries the scene).
    """
    t0 = time.perf_counter()
    kind = STAGES[claim.stage][1]
    try:
        rel = product_path(claim.product_identifier, claim.reference, claim.card, claim.obstime)
    except StorePathError as exc:
        raise SceneError("Bad metadata", str(exc), retryable=False) from None
    t_read = t_stats = 0.0
    renewed = t0
    files: list[BandFile] = []
    stats: list[np.ndarray] = []
    codes: list[str] = []
    pids: np.ndarray | None = None
    hists: tuple[bytes, int] | None = None
    has_data: np.ndarray | None = None      # per parcel of the stage's index: any valid pixel
    checks: list[quality.BandCheck] = []
    nodata_used: dict[str, float | None] = {}
    index_version = ""
    parcels_version: str | None = None
    fp_cache: dict[int, Any] = {}
    try:
        with store.product(rel) as prod:
            files, offsets = band_files(prod, cfg, claim.stage, claim.card, claim.reference,
                                        claim.processing_baseline)
            for bf in files:
                ta = time.perf_counter()
                for comp in bf.companions:
                    prod.local(comp)
                rd = read_band(prod.local(bf.rel), bf, url, cfg, claim.footprint, claim.obsid)
                tb = time.perf_counter()
                t_read += tb - ta
                idx = rd.idx
                index_version = f"{lineage.RASTERIZER}:{(idx.parcels_version or '')[:12]}:{idx.source}"
                if parcels_version is not None and (idx.parcels_version or "") != parcels_version:
                    raise writer.ParcelsChanged(f"{bf.band}: the parcel set was replaced between two bands")
                parcels_version = idx.parcels_version or ""
                nodata_used[bf.band] = None if rd.nodata is None or rd.nodata != rd.nodata else float(rd.nodata)
                if rd.epsg not in fp_cache:
                    fp_cache[rd.epsg] = _footprint_in(claim.footprint, rd.epsg)
                expected = quality.expected_parcels(idx, rd.bounds, fp_cache[rd.epsg], cfg.quality.coverage_margin_m)
                arr = rd.arr
                if arr is None:
                    checks.append(quality.BandCheck(band=bf.band, expected=int(expected.sum())))
                    continue
                args = (arr, rd.r0, rd.c0, idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1)
                nodata = rd.nodata
                if kind == "hist":
                    nclasses = int(arr.max()) + 1 if arr.size else 1
                    counts = kernels.parcel_histograms(*args, nclasses, int(nodata or 0), nodata is not None)
                    checks.append(quality.check_hist_band(cfg, counts, expected))
                    hists = kernels.hist_copy_text(idx.pids, claim.obsid, counts)
                    valid = counts.sum(axis=1) > 0
                else:
                    st = kernels.parcel_stats(*args, idx.max_pixels, nodata)
                    nan_frac = kernels.nan_count(arr) / arr.size if arr.dtype.kind == "f" and arr.size else 0.0
                    checks.append(quality.check_stats_band(cfg, claim.card, bf.band, st, expected, nan_frac))
                    if bf.offset:
                        st[:, [1, 3, 4, 5, 6, 7]] += bf.offset   # all but count and std
                    if pids is not None and pids is not idx.pids and not np.array_equal(pids, idx.pids):
                        raise SceneError("Grid error", f"{bf.band}: bands of one stage on different parcel "
                                         "indexes", retryable=True)    # a replaced set is caught above
                    pids = idx.pids
                    stats.append(st)
                    codes.append(bf.band)
                    valid = st[:, 0] > 0
                has_data = valid if has_data is None else has_data | valid
                t_stats += time.perf_counter() - tb
                del arr, rd
                if time.perf_counter() - renewed > cfg.lease_minutes * 20:   # a third of the lease
                    with session.tx() as conn:
                        queue.extend_lease(conn, cfg, claim, owner)
                    renewed = time.perf_counter()
    except FileNotFoundError as exc:
        raise SceneError("No file", str(exc), retryable=True) from None
    n_parcels = int(has_data.sum()) if has_data is not None else 0
    verdict = quality.evaluate(cfg, checks, released=claim.gate_released)
    tw = time.perf_counter()
    result: dict[str, Any] = {"obsid": claim.obsid, "reference": claim.reference, "stage": claim.stage,
                              "parcels": n_parcels, "read_s": round(t_read, 3), "stats_s": round(t_stats, 3)}
    if not verdict.passed and not claim.gate_released:
        with session.tx() as conn:
            queue.quarantine(conn, cfg, claim, owner, verdict.reason, verdict.as_json(cfg))
        log.warning("scene %s %s: Quarantined, no rows written: %s (accept it with `cbm release --aoi %s "
                    "--obsid %d`)", claim.reference, claim.stage, verdict.reason, cfg.name, claim.obsid)
        result.update(status=queue.QUARANTINED, rows=0, error=verdict.reason,
                      seconds=round(time.perf_counter() - t0, 3))
        return result
    if not verdict.passed:
        log.warning("scene %s %s: quality gate would quarantine it (%s), but an operator released it",
                    claim.reference, claim.stage, verdict.reason)
    bands = [b.band for b in files]
    rec = lineage.stage_lineage(stage=claim.stage, bands=bands, nodata=nodata_used, all_touched=cfg.all_touched,
                                offsets=offsets or None, index_version=index_version,
                                processing_baseline=claim.processing_baseline, catalogue_source=claim.source,
                                product=rel)
    part = ensure_partition(url, cfg, claim.obsid)
    with session.tx() as conn:
        n_rows = writer.write_stage(
            conn, cfg, claim, owner, part, sigs=(pids, codes, stats) if kind == "stats" and stats and pids is not None
            else None, hists=(hists or (b"", 0)) if kind == "hist" else None, bands=bands,
            offsets=offsets or None, parcels=n_parcels, seconds=time.perf_counter() - t0,
            lineage=rec, quality=verdict.as_json(cfg), parcels_version=parcels_version)
    total = time.perf_counter() - t0
    result.update(status=queue.EXTRACTED if n_rows else queue.NO_PARCELS, rows=n_rows,
                  write_s=round(time.perf_counter() - tw, 3), seconds=round(total, 3))
    log.info("scene %s %s: %s, %d parcels, %d rows, %.2f s (read %.2f, stats %.2f, write %.2f)",
             claim.reference, claim.stage, result["status"], result["parcels"], n_rows, total,
             result["read_s"], result["stats_s"], result["write_s"])
    return result


class DatabaseUnavailable(RuntimeError):
    """The database stayed unreachable longer than the AOI's ``db_retry_minutes``."""


TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError)   # candidates; see is_connection_lost


class _Backoff:
    """Bounded retry of database outages: waits 1, 2, 4 ... 30 s, gives up after ``budget_s``."""

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.first: float | None = None
        self.n = 0

    def ok(self) -> None:
        self.first, self.n = None, 0

    def wait(self, exc: BaseException, what: str) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if now - self.first >= self.budget_s:
            raise DatabaseUnavailable(f"database unreachable for {now - self.first:.0f} s while {what}: "
                                      f"{detail}") from None
        delay = min(2.0 ** self.n, 30.0)
        self.n += 1
        log.warning("database connection failed while %s (%s): retrying in %.0f s", what, detail, delay)
        time.sleep(delay)


def run_queue(url: str, cfg: AoiConfig, stage: str, *, start: dt.datetime | None = None,
              end: dt.datetime | None = None, limit: int | None = None, obsids: list[int] | None = None,
              owner_label: str = "", store: MountStore | S3Store | None = None) -> dict[str, Any]:
    """Claim and process claimable scenes of one stage until none is left.

    The worker's claims, liveness locks and writes go through one database session
    (:class:`cbm_ops.queue.Session`). A connection failure (database restart, network) is
    ridden out for ``cfg.db_retry_minutes``: the scene in flight is rolled back, given
    back and processed again after the reconnect.

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
        Name of the caller (Airflow ``dag/run/task/map_index``) recorded as the lease
        owner's prefix.
    store : optional
        Scene store (default: from the AOI configuration and environment).

    Returns
    -------
    dict
        scenes, rows, parcels, seconds, scenes by status, per-scene results, and
        ``held_by_others``: scenes of the selection that another live worker holds (left
        alone, also logged).

    Raises
    ------
    DatabaseUnavailable
        If the database stayed unreachable for ``db_retry_minutes``.
    """
    if stage not in cfg.stages:
        log.info("%s: stage %s is not configured, nothing to do", cfg.name, stage)
        return {"stage": stage, "scenes": 0, "rows": 0, "by_status": {}, "results": [], "held_by_others": []}
    store = store or make_store(cfg)
    threads = configure_threads(cfg.threads_per_task)
    owner = queue.new_owner(owner_label)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    by_status: Counter[str] = Counter()
    session = queue.Session(url)
    backoff = _Backoff(cfg.db_retry_minutes * 60.0)
    in_flight: queue.Claim | None = None
    lost_with: Counter[int] = Counter()      # connection losses while a scene was in flight
    replaced = 0                             # scenes given back because the parcel set changed
    held: list[tuple[int, str, dt.datetime]] = []
    try:
        while limit is None or len(results) < limit:
            try:
                if in_flight is not None:      # a claim of ours from before a reconnect: give it back
                    lost_with[in_flight.obsid] += 1
                    if lost_with[in_flight.obsid] < cfg.max_attempts:
                        with session.tx() as conn:
                            queue.release(conn, cfg, in_flight, owner)
                    else:                      # the connection dies with this scene every time
                        log.warning("scene %s %s was in flight at %d connection losses: not given back, "
                                    "its attempts count", in_flight.reference, stage, lost_with[in_flight.obsid])
                    in_flight = None
                with session.tx() as conn:
                    claims = queue.claim(conn, cfg, stage, owner, n=1, obsids=obsids, start=start, end=end)
            except TRANSIENT as exc:
                if not is_connection_lost(exc):
                    raise
                session.reset()
                backoff.wait(exc, f"claiming {stage} scenes")
                continue
            backoff.ok()
            if not claims:
                break
            c = claims[0]
            try:
                try:
                    res = process_claim(url, cfg, c, owner, store, session)
                except SceneError as exc:
                    res = _record_failure(session, cfg, c, owner, exc.status, str(exc), exc.retryable)
                except queue.LeaseLost as exc:
                    log.warning("%s", exc)
                    res = {"obsid": c.obsid, "reference": c.reference, "stage": stage, "status": "lease lost"}
                except writer.ParcelsChanged as exc:         # nothing written: back, not counted
                    log.warning("%s", exc)
                    with session.tx() as conn:
                        queue.release(conn, cfg, c, owner)
                    _unlock(session, cfg, c)
                    replaced += 1
                    if replaced <= cfg.max_attempts:
                        continue
                    raise
                except Exception as exc:  # noqa: BLE001 - record it on the scene, go on with the next
                    if is_connection_lost(exc):
                        raise
                    # a statement error on a live connection (statement_timeout, deadlock, disk
                    # full) is the scene's failure: attempt counted, not retried here forever
                    log.exception("scene %s %s failed", c.reference, stage)
                    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                    res = _record_failure(session, cfg, c, owner, "Failed", detail, True)
            except TRANSIENT as exc:
                if not is_connection_lost(exc):
                    raise
                session.reset()
                in_flight = c
                backoff.wait(exc, f"processing scene {c.reference} {stage} (rolled back, will be redone)")
                continue
            _unlock(session, cfg, c)
            results.append(res)
            by_status[res["status"]] += 1
        try:
            with session.tx() as conn:
                held = queue.held_by_others(conn, cfg, stage, owner, obsids=obsids, start=start, end=end)
        except TRANSIENT as exc:
            log.warning("could not list the scenes held by other workers: %s", exc)
    finally:
        session.close()
    seconds = time.perf_counter() - t0
    rows = sum(r.get("rows", 0) for r in results)
    summary = {"stage": stage, "scenes": len(results), "rows": rows,
               "parcels": sum(r.get("parcels", 0) for r in results),
               "seconds": round(seconds, 2), "by_status": dict(by_status),
               "scenes_per_min": round(len(results) / seconds * 60, 1) if results and seconds else 0.0,
               "results": results, "threads": threads,
               "held_by_others": [{"obsid": o, "owner": w, "lease_expires": str(e)} for o, w, e in held]}
    log.info("%s %s: %d scenes %s, %d rows in %.1f s", cfg.name, stage, len(results), dict(by_status),
             rows, seconds)
    if held:
        log.warning("%s %s: %d scenes left alone because another live worker holds them: %s", cfg.name, stage,
                    len(held), ", ".join(f"{o} ({w})" for o, w, _ in held[:20]))
    return summary


def _unlock(session: queue.Session, cfg: AoiConfig, c: queue.Claim) -> None:
    try:
        with session.tx() as conn:
            queue.unlock(conn, cfg, c)
    except TRANSIENT as exc:
        if not is_connection_lost(exc):
            raise
        session.reset()          # the lock went with the broken connection


def _record_failure(session: queue.Session, cfg: AoiConfig, c: queue.Claim, owner: str, status: str,
                    message: str, retryable: bool) -> dict[str, Any]:
    log.warning("scene %s %s: %s (%s): %s", c.reference, c.stage, status,
                "retryable" if retryable else "permanent", message)
    with session.tx() as conn:
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
