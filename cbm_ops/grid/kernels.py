"""Numba kernels: per-parcel statistics and class histograms over a run-length parcel index.

The parcel index (see :mod:`cbm_ops.grid.index`) stores, for parcel ``p``, the runs
``run_ptr[p]:run_ptr[p+1]``; run ``i`` covers grid row ``run_row[i]`` and columns
``run_c0[i] <= col < run_c1[i]``. An image window covers grid rows ``[r0, r0 + H)`` and
columns ``[c0, c0 + W)``; runs are clipped to it, so the same index serves every scene on
its grid. There is no per-parcel Python loop: kernels run in parallel over chunks of
parcels (``prange``), each chunk with its own scratch buffers.

Definitions (match numpy and rasterstats):

* a pixel is valid unless it equals ``nodata`` (when given) or is NaN;
* ``count`` valid pixels; ``mean``; ``std`` with ddof 0 (two-pass, float64);
  ``min``; ``max``; ``p25``, ``p50``, ``p75`` with numpy's default ``'linear'`` method
  (``numpy.percentile``: h = (n - 1) q, lerp between the order statistics floor(h) and
  floor(h) + 1, with numpy's ``_lerp`` formula);
* integer bands use counting over the parcel's value range when that range is small
  compared with its pixel count, selection (quickselect) otherwise; float bands use
  selection.

Compiled with ``cache=True``: set ``NUMBA_CACHE_DIR`` to a writable directory when the
package directory is read-only (containers).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange


def _chunks(n_parcels: int) -> int:
    """Parcel chunks for prange: several per thread so uneven parcels balance out."""
    return max(1, min(n_parcels, numba.get_num_threads() * 16))


NSTATS = 8          # count, mean, std, min, max, p25, p50, p75
STAT_NAMES = ("count", "mean", "std", "min", "max", "p25", "p50", "p75")


@njit(cache=True, nogil=True, inline="always")
def _lerp(a, b, t):
    # numpy.lib._function_base_impl._lerp
    d = b - a
    if t >= 0.5:
        return b - d * (1.0 - t)
    return a + d * t


@njit(cache=True, nogil=True)
def _select(buf, lo, hi, k):
    """Partially sort buf[lo:hi] so that buf[k] is its k-th smallest (Hoare, median of 3)."""
    while hi - lo > 1:
        mid = (lo + hi - 1) >> 1
        a, b, c = buf[lo], buf[mid], buf[hi - 1]
        if a < b:
            pivot = b if b < c else (c if a < c else a)
        else:
            pivot = a if a < c else (c if b < c else b)
        i, j = lo, hi - 1
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                tmp = buf[i]
                buf[i] = buf[j]
                buf[j] = tmp
                i += 1
                j -= 1
        # now buf[lo:j+1] <= pivot <= buf[i:hi] and buf[j+1:i] == pivot
        if k <= j:
            hi = j + 1
        elif k >= i:
            lo = i
        else:
            return


@njit(cache=True, nogil=True)
def _min_of(buf, lo, hi):
    m = buf[lo]
    for i in range(lo + 1, hi):
        if buf[i] < m:
            m = buf[i]
    return m


@njit(cache=True, nogil=True)
def _quantiles_select(buf, n, out, base):
    """p25, p50, p75 of buf[:n] (destroys the order) into out[base:base+3]."""
    h50 = (n - 1) * 0.5
    k50 = int(np.floor(h50))
    _select(buf, 0, n, k50)
    a50 = np.float64(buf[k50])
    b50 = np.float64(_min_of(buf, k50 + 1, n)) if k50 + 1 < n else a50
    # p25 from the left part buf[0:k50+1], p75 from the right part buf[k50:n]
    h25 = (n - 1) * 0.25
    k25 = int(np.floor(h25))
    if k25 < k50:
        _select(buf, 0, k50, k25)
        a25 = np.float64(buf[k25])
        b25 = np.float64(_min_of(buf, k25 + 1, k50)) if k25 + 1 < k50 else a50
    else:
        a25 = a50
        b25 = b50
    h75 = (n - 1) * 0.75
    k75 = int(np.floor(h75))
    if k75 > k50:
        _select(buf, k50 + 1, n, k75)
        a75 = np.float64(buf[k75])
        b75 = np.float64(_min_of(buf, k75 + 1, n)) if k75 + 1 < n else a75
    else:
        a75 = a50
        b75 = b50
    out[base] = _lerp(a25, b25, h25 - k25)
    out[base + 1] = _lerp(a50, b50, h50 - k50)
    out[base + 2] = _lerp(a75, b75, h75 - k75)


@njit(cache=True, nogil=True)
def _quantiles_count(buf, n, vmin, span, hist, out, base):
    """p25, p50, p75 of integer buf[:n] by counting over [vmin, vmin + span)."""
    for i in range(span):
        hist[i] = 0
    for i in range(n):
        hist[np.int64(buf[i]) - vmin] += 1
    # ranks needed: floor(h) and floor(h) + 1 for q = .25, .5, .75
    hs = ((n - 1) * 0.25, (n - 1) * 0.5, (n - 1) * 0.75)
    ranks = np.empty(6, np.int64)
    for j in range(3):
        k = int(np.floor(hs[j]))
        ranks[2 * j] = k
        ranks[2 * j + 1] = k + 1 if k + 1 < n else k
    order = np.argsort(ranks)            # ranks of different quantiles interleave for small n
    vals = np.empty(6, np.float64)
    r = 0
    cum = 0
    for i in range(span):
        cum += hist[i]
        while r < 6 and ranks[order[r]] < cum:
            vals[order[r]] = vmin + i
            r += 1
        if r == 6:
            break
    for j in range(3):
        k = int(np.floor(hs[j]))
        out[base + j] = _lerp(vals[2 * j], vals[2 * j + 1], hs[j] - k)


@njit(cache=True, nogil=True)
def _one_parcel(img, r0, c0, run_ptr, run_row, run_c0, run_c1, p, nodata, has_nodata,
                is_int, buf, hist, out):
    H, W = img.shape
    n = 0
    s = 0.0
    for i in range(run_ptr[p], run_ptr[p + 1]):
        r = run_row[i] - r0
        if r < 0 or r >= H:
            continue
        a = run_c0[i] - c0
        b = run_c1[i] - c0
        if a < 0:
            a = 0
        if b > W:
            b = W
        for c in range(a, b):
            v = img[r, c]
            if v != v:                       # NaN
                continue
            if has_nodata and v == nodata:
                continue
            buf[n] = v
            n += 1
            s += v
    out[p, 0] = n
    if n == 0:
        for k in range(1, out.shape[1]):
            out[p, k] = np.nan
        return
    mean = s / n
    vmin = buf[0]
    vmax = buf[0]
    ss = 0.0
    for i in range(n):
        v = buf[i]
        d = v - mean
        ss += d * d
        if v < vmin:
            vmin = v
        if v > vmax:
            vmax = v
    out[p, 1] = mean
    out[p, 2] = np.sqrt(ss / n)
    out[p, 3] = vmin
    out[p, 4] = vmax
    if is_int:
        span = np.int64(vmax) - np.int64(vmin) + 1
        if span <= hist.size and span <= 4 * n + 64:
            _quantiles_count(buf, n, np.int64(vmin), span, hist, out[p], 5)
            return
    _quantiles_select(buf, n, out[p], 5)


@njit(parallel=True, cache=True, nogil=True)
def _parcel_stats(img, r0, c0, run_ptr, run_row, run_c0, run_c1, max_pixels, nodata, has_nodata, is_int,
                  nchunks):
    P = run_ptr.size - 1
    out = np.empty((P, NSTATS), np.float64)
    for ch in prange(nchunks):
        buf = np.empty(max(max_pixels, 1), img.dtype)
        hist = np.empty(65536 if is_int else 1, np.int64)
        p0 = ch * P // nchunks
        p1 = (ch + 1) * P // nchunks
        for p in range(p0, p1):
            _one_parcel(img, r0, c0, run_ptr, run_row, run_c0, run_c1, p, nodata, has_nodata,
                        is_int, buf, hist, out)
    return out


def parcel_stats(img: np.ndarray, r0: int, c0: int, run_ptr: np.ndarray, run_row: np.ndarray,
                 run_c0: np.ndarray, run_c1: np.ndarray, max_pixels: int,
                 nodata: float | None = None) -> np.ndarray:
    """All 8 statistics per parcel for one band window.

    Parameters
    ----------
    img : ndarray, shape (H, W), any integer or float dtype
        Band window in the band's units (DN, linear power ...); pixel (0, 0) is grid
        cell (r0, c0).
    r0, c0 : int
        Grid row/column of the window's first pixel.
    run_ptr : int64 ndarray, shape (P + 1,)
    run_row, run_c0, run_c1 : int32 ndarray, shape (R,)
        Run-length parcel index (grid coordinates, ``run_c1`` exclusive).
    max_pixels : int
        Upper bound of any parcel's pixel count (scratch buffer size).
    nodata : float, optional
        Value masked per pixel; NaN is always masked.

    Returns
    -------
    ndarray, shape (P, 8), float64
        count, mean, std (ddof 0), min, max, p25, p50, p75; rows of parcels without
        valid pixels have count 0 and NaN for the other statistics.
    """
    is_int = bool(np.issubdtype(img.dtype, np.integer))
    has_nodata = nodata is not None and not (not is_int and np.isnan(nodata))
    if nodata is not None and has_nodata and is_int:
        info = np.iinfo(img.dtype)
        if not (info.min <= nodata <= info.max) or nodata != int(nodata):
            has_nodata = False           # cannot occur in this dtype
    nd = np.array(nodata if has_nodata else 0, dtype=img.dtype)[()]
    return _parcel_stats(img, np.int64(r0), np.int64(c0), run_ptr, run_row, run_c0, run_c1,
                         np.int64(max_pixels), nd, has_nodata, is_int, _chunks(run_ptr.size - 1))


@njit(parallel=True, cache=True, nogil=True)
def parcel_histograms(img, r0, c0, run_ptr, run_row, run_c0, run_c1, nclasses, nodata, has_nodata):
    """Pixel count per class value per parcel (SCL histograms).

    Parameters
    ----------
    img : ndarray, shape (H, W), unsigned integer dtype
        Class band window (e.g. SCL, uint8, classes 0-11); pixel (0, 0) is grid (r0, c0).
    nclasses : int
        Values ``>= nclasses`` are not counted (pass ``img.max() + 1``).
    nodata : int
        Class not counted when ``has_nodata`` (SCL 0, NO_DATA).

    Returns
    -------
    ndarray, shape (P, nclasses), int32
        Pixel counts; a parcel with only nodata pixels has an all-zero row.
    """
    P = run_ptr.size - 1
    H, W = img.shape
    out = np.zeros((P, nclasses), np.int32)
    for p in prange(P):
        for i in range(run_ptr[p], run_ptr[p + 1]):
            r = run_row[i] - r0
            if r < 0 or r >= H:
                continue
            a = max(run_c0[i] - c0, 0)
            b = min(run_c1[i] - c0, W)
            for c in range(a, b):
                v = np.int64(img[r, c])
                if has_nodata and v == nodata:
                    continue
                if v < nclasses:
                    out[p, v] += 1
    return out


@njit(cache=True, nogil=True)
def _put_int(dst, pos, v):
    if v == 0:
        dst[pos] = 48
        return pos + 1
    if v < 0:
        dst[pos] = 45
        pos += 1
        v = -v
    ndig = 0
    t = v
    while t > 0:
        ndig += 1
        t //= 10
    for k in range(ndig - 1, -1, -1):
        dst[pos + k] = 48 + v % 10
        v //= 10
    return pos + ndig


@njit(cache=True, nogil=True)
def hist_copy_text(pids, obsid, counts):
    """COPY text rows ``pid<TAB>obsid<TAB>{"4": 95, "9": 12}`` for parcels with data.

    Parameters
    ----------
    pids : int32/int64 ndarray, shape (P,)
    obsid : int
    counts : int32 ndarray, shape (P, nclasses)

    Returns
    -------
    (bytes-like uint8 ndarray, int)
        The text (ASCII) and the number of rows written.
    """
    P, K = counts.shape
    dst = np.empty(P * (40 + K * 16) + 16, np.uint8)
    pos = 0
    rows = 0
    for p in range(P):
        tot = 0
        for k in range(K):
            tot += counts[p, k]
        if tot == 0:
            continue
        rows += 1
        pos = _put_int(dst, pos, np.int64(pids[p]))
        dst[pos] = 9
        pos = _put_int(dst, pos + 1, np.int64(obsid))
        dst[pos] = 9
        dst[pos + 1] = 123                      # {
        pos += 2
        first = True
        for k in range(K):
            if counts[p, k] == 0:
                continue
            if not first:
                dst[pos] = 44                   # ,
                dst[pos + 1] = 32
                pos += 2
            first = False
            dst[pos] = 34                       # "
            pos = _put_int(dst, pos + 1, k)
            dst[pos] = 34
            dst[pos + 1] = 58                   # :
            dst[pos + 2] = 32
            pos = _put_int(dst, pos + 3, np.int64(counts[p, k]))
        dst[pos] = 125                          # }
        dst[pos + 1] = 10
        pos += 2
    return dst[:pos], rows


@njit(cache=True, nogil=True)
def label_runs(labels, row_offset, col_offset):
    """Run-length encode a label raster (0 = no parcel).

    Parameters
    ----------
    labels : int32 ndarray, shape (H, W)
        Parcel number + 1 per pixel.
    row_offset, col_offset : int
        Grid position of ``labels[0, 0]``.

    Returns
    -------
    tuple of int32 ndarrays, each shape (R,)
        label, grid row, first column, end column (exclusive) of every run, row-major.
    """
    H, W = labels.shape
    n = 0
    for r in range(H):
        prev = 0
        for c in range(W):
            v = labels[r, c]
            if v != prev and v != 0:
                n += 1
            prev = v
    lab = np.empty(n, np.int32)
    row = np.empty(n, np.int32)
    a = np.empty(n, np.int32)
    b = np.empty(n, np.int32)
    i = -1
    for r in range(H):
        prev = 0
        for c in range(W):
            v = labels[r, c]
            if v != prev:
                if prev != 0:
                    b[i] = c + col_offset
                if v != 0:
                    i += 1
                    lab[i] = v
                    row[i] = r + row_offset
                    a[i] = c + col_offset
            prev = v
        if prev != 0:
            b[i] = W + col_offset
    return lab, row, a, b


@njit(parallel=True, cache=True, nogil=True)
def _nan_count(img):
    H = img.shape[0]
    total = 0
    for r in prange(H):
        n = 0
        row = img[r]
        for v in row:
            if v != v:
                n += 1
        total += n
    return total


def nan_count(img: np.ndarray) -> int:
    """Number of NaN pixels in a float band window.

    Parameters
    ----------
    img : float32/float64 ndarray, shape (H, W)

    Returns
    -------
    int
        0 for integer dtypes (they cannot hold NaN).
    """
    if img.dtype.kind != "f" or img.size == 0:
        return 0
    return int(_nan_count(img))


@njit(cache=True, nogil=True)
def block_mask(run_row, run_c0, run_c1, r_off, c_off, height, width, block_h, block_w):
    """Image blocks (tiles) that hold pixels of the index's runs.

    Parameters
    ----------
    run_row, run_c0, run_c1 : int32 ndarrays, shape (R,)
        Runs of a parcel index (grid row, first column, end column exclusive).
    r_off, c_off : int
        Index-grid row and column of the image's pixel (0, 0).
    height, width : int
        Image size (pixels).
    block_h, block_w : int
        Block (JPEG2000 tile, GeoTIFF/COG block, raw scanline) size of the image (pixels).

    Returns
    -------
    bool ndarray, shape (ceil(height / block_h), ceil(width / block_w))
        True for every block one of whose pixels lies in a run; runs are clipped to the
        image (runs outside it mark nothing).
    """
    nty = (height + block_h - 1) // block_h
    ntx = (width + block_w - 1) // block_w
    out = np.zeros((nty, ntx), np.bool_)
    for i in range(run_row.size):
        r = np.int64(run_row[i]) - r_off
        if r < 0 or r >= height:
            continue
        a = max(np.int64(run_c0[i]) - c_off, 0)
        b = min(np.int64(run_c1[i]) - c_off, width)
        if b <= a:
            continue
        ty = r // block_h
        for tx in range(a // block_w, (b - 1) // block_w + 1):
            out[ty, tx] = True
    return out
