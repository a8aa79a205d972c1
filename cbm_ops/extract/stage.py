"""One claimed scene stage: its bands read, their statistics, the quality gate, the write.

:func:`process_claim` decodes every band of the stage (:mod:`.bands`), runs the Numba
kernels over the parcel index (:mod:`cbm_ops.grid.kernels`), passes the stage through the
quality gate (:mod:`.quality`) and writes its rows and new state in one transaction
(:mod:`.writer`); a stage that fails the gate is stored ``Quarantined`` without rows.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import queue
from ..config import STAGES, AoiConfig
from ..db.partitions import ensure_partition
from ..errors import ParcelsChanged, SceneError, StorePathError
from ..grid import kernels
from . import lineage, quality, writer
from .bands import BandRead, footprint_in, read_band
from .scenes import BandFile, band_files
from .store import MountStore, ProductFiles, S3Store, product_path

log = logging.getLogger(__name__)


@dataclass
class StageBands:
    """What the bands of one scene stage produced, band by band.

    Attributes
    ----------
    kind : {"stats", "hist"}
        sigs rows (band statistics) or hists rows (SCL histograms).
    pids : int32 ndarray, shape (P,), or None
        Parcel ids of the index every statistics band was computed on.
    stats : list of float64 ndarrays, each shape (P, 8)
        Statistics per band (BOA offset applied), in the order of ``codes``.
    hists : (bytes, int) or None
        COPY text and row count of the SCL histograms.
    has_data : bool ndarray, shape (P,), or None
        Parcels with at least one valid pixel in any band.
    """

    kind: str
    stats: list[np.ndarray] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    pids: np.ndarray | None = None
    hists: tuple[bytes, int] | None = None
    has_data: np.ndarray | None = None
    checks: list[quality.BandCheck] = field(default_factory=list)
    nodata_used: dict[str, float | None] = field(default_factory=dict)
    index_version: str = ""
    parcels_version: str | None = None
    read_s: float = 0.0
    stats_s: float = 0.0

    @property
    def parcels(self) -> int:
        """Parcels with data in the stage."""
        return int(self.has_data.sum()) if self.has_data is not None else 0

    def note_index(self, bf: BandFile, rd: BandRead) -> None:
        """Record the band's parcel index and nodata; refuse a parcel set replaced between bands.

        Raises
        ------
        ParcelsChanged
            The band's index is of another parcel-set version than the earlier bands'.
        """
        idx = rd.idx
        self.index_version = f"{lineage.RASTERIZER}:{(idx.parcels_version or '')[:12]}:{idx.source}"
        if self.parcels_version is not None and (idx.parcels_version or "") != self.parcels_version:
            raise ParcelsChanged(f"{bf.band}: the parcel set was replaced between two bands")
        self.parcels_version = idx.parcels_version or ""
        self.nodata_used[bf.band] = None if rd.nodata is None or rd.nodata != rd.nodata else float(rd.nodata)

    def add_band(self, cfg: AoiConfig, claim: queue.Claim, bf: BandFile, rd: BandRead,
                 expected: np.ndarray) -> None:
        """Statistics (or SCL histograms) of one decoded band, and its quality checks.

        Raises
        ------
        SceneError
            ``Grid error`` (retryable) when two bands of the stage lie on different parcel
            indexes of the same parcel-set version.
        """
        arr, idx, nodata = rd.arr, rd.idx, rd.nodata
        if arr is None:
            self.checks.append(quality.BandCheck(band=bf.band, expected=int(expected.sum())))
            return
        args = (arr, rd.r0, rd.c0, idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1)
        if self.kind == "hist":
            nclasses = rd.max_value() + 1
            counts = kernels.parcel_histograms(*args, nclasses, int(nodata or 0), nodata is not None)
            self.checks.append(quality.check_hist_band(cfg, counts, expected))
            self.hists = kernels.hist_copy_text(idx.pids, claim.obsid, counts)
            valid = counts.sum(axis=1) > 0
        else:
            st = kernels.parcel_stats(*args, idx.max_pixels, nodata)
            nan_frac = rd.nan_fraction()
            self.checks.append(quality.check_stats_band(cfg, claim.card, bf.band, st, expected, nan_frac))
            if bf.offset:
                st[:, [1, 3, 4, 5, 6, 7]] += bf.offset   # all but count and std
            if self.pids is not None and self.pids is not idx.pids and not np.array_equal(self.pids, idx.pids):
                raise SceneError("Grid error", f"{bf.band}: bands of one stage on different parcel "
                                 "indexes", retryable=True)    # a replaced set is caught by note_index
            self.pids = idx.pids
            self.stats.append(st)
            self.codes.append(bf.band)
            valid = st[:, 0] > 0
        self.has_data = valid if self.has_data is None else self.has_data | valid


def process_claim(url: str, cfg: AoiConfig, claim: queue.Claim, owner: str,
                  store: MountStore | S3Store, session: queue.Session) -> dict[str, Any]:
    """Extract one claimed scene stage, pass it through the quality gate and store its rows.

    The rows and the stage's new state are written in one transaction on the worker's
    ``session`` (:mod:`.writer`); a stage that fails the gate (:mod:`.quality`) is stored
    ``Quarantined`` without rows.

    Returns
    -------
    dict
        obsid, reference, stage, status, parcels, rows and timings (s): read, stats,
        write, total.

    Raises
    ------
    SceneError
        Named failures (missing or truncated file, decode error, bad metadata, grid error).
    LeaseLost
        Another worker took the scene over; nothing was written.
    ParcelsChanged
        The parcel set was replaced while the scene was extracted; nothing was written.
    psycopg.OperationalError
        The database connection failed (the caller retries the scene).
    """
    t0 = time.perf_counter()
    try:
        rel = product_path(claim.product_identifier, claim.reference, claim.card, claim.obstime)
    except StorePathError as exc:
        raise SceneError("Bad metadata", str(exc), retryable=False) from None
    try:
        with store.product(rel, assets=claim.assets) as prod:
            files, offsets = band_files(prod, cfg, claim.stage, claim.card, claim.reference,
                                        claim.processing_baseline)
            acc = _read_bands(url, cfg, claim, owner, session, prod, files)
    except FileNotFoundError as exc:
        raise SceneError("No file", str(exc), retryable=True) from None
    verdict = quality.evaluate(cfg, acc.checks, released=claim.gate_released)
    result: dict[str, Any] = {"obsid": claim.obsid, "reference": claim.reference, "stage": claim.stage,
                              "parcels": acc.parcels, "read_s": round(acc.read_s, 3),
                              "stats_s": round(acc.stats_s, 3)}
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
    return _write(url, cfg, claim, owner, session, acc, [b.band for b in files], offsets, rel,
                  verdict.as_json(cfg), result, t0)


def _overlap_ok() -> bool:
    """Numba's threading layer may be entered from two threads at once (omp, tbb; not workqueue)."""
    import numba

    try:
        return numba.threading_layer() != "workqueue"
    except ValueError:              # no parallel kernel has run yet in this process: start the layer
        kernels.nan_count(np.zeros((1, 1), np.float32))
        return numba.threading_layer() != "workqueue"


def _band_stats(acc: StageBands, cfg: AoiConfig, claim: queue.Claim, bf: BandFile, rd: BandRead,
                footprints: dict[int, Any]) -> None:
    """The statistics and quality measures of one decoded band (bands in order)."""
    tb = time.perf_counter()
    acc.note_index(bf, rd)
    if rd.epsg not in footprints:
        footprints[rd.epsg] = footprint_in(claim.footprint, rd.epsg)
    expected = quality.expected_parcels(rd.idx, rd.bounds, footprints[rd.epsg], cfg.quality.coverage_margin_m)
    acc.add_band(cfg, claim, bf, rd, expected)
    acc.stats_s += time.perf_counter() - tb


def _read_bands(url: str, cfg: AoiConfig, claim: queue.Claim, owner: str, session: queue.Session,
                prod: ProductFiles, files: list[BandFile]) -> StageBands:
    """Decode every band file of the stage and compute its statistics (lease renewed between bands).

    GDAL's decoders and the Numba kernels release the GIL: the statistics of band k run in
    one worker thread (bands in order) while this thread decodes band k + 1, so the cores
    stay on decoding. At most one decoded band waits for its statistics (two band windows
    in memory). ``acc.read_s`` is the decode time, ``acc.stats_s`` the statistics time
    (overlapped except for the last band).
    """
    acc = StageBands(kind=STAGES[claim.stage][1])
    renewed = time.perf_counter()
    footprints: dict[int, Any] = {}
    pending: Future[None] | None = None
    with ThreadPoolExecutor(1, thread_name_prefix="cbm-stats") as ex:
        for bf in files:
            ta = time.perf_counter()
            for comp in bf.companions:
                prod.local(comp)
            rd = read_band(prod.raster(bf.rel), bf, url, cfg, claim.footprint, claim.obsid)
            acc.read_s += time.perf_counter() - ta
            if pending is not None:
                pending.result()
            if _overlap_ok():
                pending = ex.submit(_band_stats, acc, cfg, claim, bf, rd, footprints)
            else:
                _band_stats(acc, cfg, claim, bf, rd, footprints)
            del rd
            if time.perf_counter() - renewed > cfg.lease_minutes * 20:   # a third of the lease
                with session.tx() as conn:
                    queue.extend_lease(conn, cfg, claim, owner)
                renewed = time.perf_counter()
        if pending is not None:
            pending.result()
    return acc


def _write(url: str, cfg: AoiConfig, claim: queue.Claim, owner: str, session: queue.Session, acc: StageBands,
           bands: list[str], offsets: dict[str, int], rel: str, quality_json: dict[str, Any],
           result: dict[str, Any], t0: float) -> dict[str, Any]:
    """Write the stage's rows, lineage and completion in one transaction; log and return the result."""
    tw = time.perf_counter()
    rec = lineage.stage_lineage(stage=claim.stage, bands=bands, nodata=acc.nodata_used, all_touched=cfg.all_touched,
                                offsets=offsets or None, index_version=acc.index_version,
                                processing_baseline=claim.processing_baseline, catalogue_source=claim.source,
                                product=rel)
    part = ensure_partition(url, cfg, claim.obsid)
    sigs = (acc.pids, acc.codes, acc.stats) if acc.kind == "stats" and acc.stats and acc.pids is not None else None
    with session.tx() as conn:
        n_rows = writer.write_stage(
            conn, cfg, claim, owner, part, sigs=sigs,
            hists=(acc.hists or (b"", 0)) if acc.kind == "hist" else None, bands=bands,
            offsets=offsets or None, parcels=acc.parcels, seconds=time.perf_counter() - t0,
            lineage=rec, quality=quality_json, parcels_version=acc.parcels_version)
    total = time.perf_counter() - t0
    result.update(status=queue.EXTRACTED if n_rows else queue.NO_PARCELS, rows=n_rows,
                  write_s=round(time.perf_counter() - tw, 3), seconds=round(total, 3))
    log.info("scene %s %s: %s, %d parcels, %d rows, %.2f s (read %.2f, stats %.2f, write %.2f)",
             claim.reference, claim.stage, result["status"], result["parcels"], n_rows, total,
             result["read_s"], result["stats_s"], result["write_s"])
    return result
