"""Exact scanline rasterization of polygons straight to run-length pixel runs (Numba).

:func:`polygon_runs` gives, for every polygon on its own, exactly the pixels that GDAL's
rasterizer (``rasterio.features.rasterize`` of that polygon alone on the same grid, the
rule rasterstats uses) burns, as disjoint runs ``(row, c0, c1)`` with ``c1`` exclusive,
without a label raster and in parallel over polygons. Overlapping polygons each keep their
pixels, because each is rasterized alone.

The reference is GDAL 3.10 (the GDAL rasterio's wheels bundle), reproduced step by step
with its floating-point arithmetic (see docs/rasterization.md):

* world to pixel: ``GDALInvGeoTransform``'s north-up special case,
  ``px = -x0 / xres + X * (1 / xres)``, ``py = -y0 / -yres + Y * (1 / -yres)``
  (``alg/gdaltransformer.cpp``; ``GDALRasterizeGeometries`` without a transformer
  uses the GenImgProj transformer built from the dataset's geotransform);
* rings are made clockwise (in world coordinates) with OGR's ``isClockwise`` before the
  transform (``GDALCollectRingsFromGeometry``); the parts of a MultiPolygon are
  rasterized one by one (``gv_rasterize_one_shape``, MERGE_ALG=REPLACE);
* pixel-centre rule: ``GDALdllImageFilledPolygon`` (``alg/llrasterize.cpp``): scanline
  ``y + 0.5``, edges taken half-open (``dy1 <= y + 0.5 < dy2``), crossing
  ``(dy - dy1) * (dx2 - dx1) / (dy2 - dy1) + dx1`` rounded with ``floor(x + 0.5)``,
  crossings paired even-odd over all rings, pixels ``[a, b)``; horizontal edges lying on
  the scanline and running right to left are burnt separately as ``[floor(x2 + 0.5),
  floor(x1 + 0.5))``;
* all_touched: ``GDALdllImageLineAllTouched`` with ``bIntersectOnly`` (its stepping,
  clipping, epsilons and special cases for near-vertical and near-horizontal edges)
  united with the filled polygon.

The row loop is edge-major (each edge visits only the scanlines it crosses) instead of
GDAL's scanline-major loop over all edges; every crossing is computed with the same
expression from the same operands, so the pixels are the same.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import shapely
from numba import njit

EPS_INTERSECT_ONLY = 1e-4      # GDALdllImageLineAllTouched: EPSILON_INTERSECT_ONLY
POLYGON, MULTIPOLYGON = 3, 6   # shapely type ids


# ----------------------------------------------------------------------------- helpers
@njit(cache=True, nogil=True)
def _grow_f8(a, need):
    if need <= a.size:
        return a
    b = np.empty(max(need, 2 * a.size), np.float64)
    b[:a.size] = a
    return b


@njit(cache=True, nogil=True)
def _grow_i8(a, need):
    if need <= a.size:
        return a
    b = np.empty(max(need, 2 * a.size), np.int64)
    b[:a.size] = a
    return b


@njit(cache=True, nogil=True)
def _cround(x):
    """C ``std::round``: half away from zero."""
    t = np.trunc(x)
    if abs(x - t) >= 0.5:
        t += 1.0 if x > 0 else -1.0
    return t


@njit(cache=True, nogil=True)
def _is_clockwise(x, y, s, n):
    """OGR ``OGRCurve::isClockwise`` / ``OGRLineString::isClockwise`` of the closed ring
    ``x[s:s+n], y[s:s+n]`` (GDAL 3.10, ogr/ogrcurve.cpp)."""
    if n < 3:
        return True
    use_fallback = False
    sel = s
    before = s
    before_sel = s
    next_sel = s
    next_is_next_sel = True
    v = 0
    for i in range(1, n - 1):
        cur = s + i
        if next_is_next_sel:
            next_sel = cur
            next_is_next_sel = False
        if y[cur] < y[sel] or (y[cur] == y[sel] and x[cur] > x[sel]):
            v = i
            before_sel = before
            sel = cur
            use_fallback = False
            next_is_next_sel = True
        elif y[cur] == y[sel] and x[cur] == x[sel]:
            use_fallback = True
        before = cur
    n_m2 = s + n - 2
    if next_is_next_sel:
        next_sel = n_m2
    if v == 0:
        before_sel = n_m2
    eps = 1.0e-5
    if abs(x[before_sel] - x[sel]) < eps and abs(y[before_sel] - y[sel]) < eps:
        use_fallback = True
    dx0 = x[before_sel] - x[sel]
    dy0 = y[before_sel] - y[sel]
    if v + 1 >= n - 1:
        next_sel = s
    if abs(x[next_sel] - x[sel]) < eps and abs(y[next_sel] - y[sel]) < eps:
        use_fallback = True
    dx1 = x[next_sel] - x[sel]
    dy1 = y[next_sel] - y[sel]
    cross = dx1 * dy0 - dx0 * dy1
    if not use_fallback:
        if cross > 0:
            return False
        elif cross < 0:
            return True
    # Green's formula (degenerate rings)
    before = s
    cur = s + 1
    acc = x[s] * (y[cur] - y[s])
    for i in range(1, n - 1):
        nxt = s + i + 1
        acc += x[cur] * (y[nxt] - y[before])
        before = cur
        cur = nxt
    acc += x[cur] * (y[s] - y[before])
    return acc < 0


# ----------------------------------------------------------------------------- fill
@njit(cache=True, nogil=True)
def _fill(px, py, rs, nr, W, H, rowcnt, xs, srow, sc0, sc1, ns):
    """GDALdllImageFilledPolygon of one polygon (rings ``rs[k]:rs[k+1]`` of px/py).

    Appends spans at ``ns`` when the buffers are large enough. Returns (ns_new, need_xs):
    ``ns_new`` may exceed the span capacity (then nothing past it was written) and
    ``need_xs > xs.size`` means the crossings did not fit (nothing was emitted).
    """
    nv = rs[nr]
    if nv == 0:
        return ns, 0
    dminy = py[0]
    dmaxy = py[0]
    for i in range(1, nv):
        if py[i] < dminy:
            dminy = py[i]
        if py[i] > dmaxy:
            dmaxy = py[i]
    # GDAL: miny = (int)dminy, maxy = (int)dmaxy, clipped to the raster (float domain
    # first: no overflow for far-away polygons)
    fminy = np.trunc(dminy)
    fmaxy = np.trunc(dmaxy)
    if fminy < 0.0:
        fminy = 0.0
    if fmaxy > H - 1.0:
        fmaxy = H - 1.0
    if not (fminy <= fmaxy):
        return ns, 0
    miny = np.int64(fminy)
    maxy = np.int64(fmaxy)
    nrows = maxy - miny + 1
    cap = srow.size
    # pass 1: horizontal edges on a scanline (burnt right away), crossings per row
    for k in range(nrows + 1):
        rowcnt[k] = 0
    for r in range(nr):
        a0 = rs[r]
        a1 = rs[r + 1]
        for i in range(a0, a1):
            if i == a0:
                ind1 = a1 - 1
                ind2 = a0
            else:
                ind1 = i - 1
                ind2 = i
            dy1 = py[ind1]
            dy2 = py[ind2]
            if dy1 == dy2:
                if px[ind1] > px[ind2]:
                    fy = dy1 - 0.5
                    if fy == np.floor(fy) and fy >= miny and fy <= maxy and fy + 0.5 == dy1:
                        h1 = np.floor(px[ind2] + 0.5)
                        h2 = np.floor(px[ind1] + 0.5)
                        if h1 > W - 1.0 or h2 <= 0.0:
                            continue
                        c0 = np.int64(max(h1, 0.0))
                        c1 = np.int64(min(h2, float(W)))
                        if c0 < c1:
                            if ns < cap:
                                srow[ns] = np.int64(fy)
                                sc0[ns] = c0
                                sc1[ns] = c1
                            ns += 1
                continue
            if dy1 > dy2:
                t = dy1
                dy1 = dy2
                dy2 = t
            lo = np.floor(dy1 - 0.5) - 1.0
            if lo < miny:
                lo = float(miny)
            hi = np.ceil(dy2 - 0.5) + 1.0
            if hi > maxy:
                hi = float(maxy)
            while lo <= hi and lo + 0.5 < dy1:
                lo += 1.0
            while hi >= lo and not (hi + 0.5 < dy2):
                hi -= 1.0
            if lo > hi:
                continue
            for y in range(np.int64(lo), np.int64(hi) + 1):
                rowcnt[y - miny + 1] += 1
    for k in range(nrows):
        rowcnt[k + 1] += rowcnt[k]
    total = rowcnt[nrows]
    if total > xs.size:
        return ns, total
    # pass 2: crossings (GDAL's expression), scattered per row
    for r in range(nr):
        a0 = rs[r]
        a1 = rs[r + 1]
        for i in range(a0, a1):
            if i == a0:
                ind1 = a1 - 1
                ind2 = a0
            else:
                ind1 = i - 1
                ind2 = i
            dy1 = py[ind1]
            dy2 = py[ind2]
            if dy1 == dy2:
                continue
            if dy1 < dy2:
                dx1 = px[ind1]
                dx2 = px[ind2]
            else:
                dy2 = py[ind1]
                dy1 = py[ind2]
                dx2 = px[ind1]
                dx1 = px[ind2]
            lo = np.floor(dy1 - 0.5) - 1.0
            if lo < miny:
                lo = float(miny)
            hi = np.ceil(dy2 - 0.5) + 1.0
            if hi > maxy:
                hi = float(maxy)
            while lo <= hi and lo + 0.5 < dy1:
                lo += 1.0
            while hi >= lo and not (hi + 0.5 < dy2):
                hi -= 1.0
            if lo > hi:
                continue
            for y in range(np.int64(lo), np.int64(hi) + 1):
                dy = y + 0.5
                inter = (dy - dy1) * (dx2 - dx1) / (dy2 - dy1) + dx1
                f = np.floor(inter + 0.5)
                # monotone clamp (keeps the even-odd pairing, avoids int overflow)
                if f < -1.0:
                    f = -1.0
                elif f > W + 1.0:
                    f = W + 1.0
                k = y - miny  # type: ignore[assignment]  # numpy int64 vs int: one type to Numba
                xs[rowcnt[k]] = np.int64(f)
                rowcnt[k] += 1
    # rowcnt[k] is now the end of row k; row k starts at rowcnt[k-1] (0 for k = 0)
    start = 0
    for k in range(nrows):
        end = rowcnt[k]
        # insertion sort of the row's crossings (few per row)
        for a in range(start + 1, end):
            v = xs[a]
            b = a - 1
            while b >= start and xs[b] > v:
                xs[b + 1] = xs[b]
                b -= 1
            xs[b + 1] = v
        y = miny + k  # type: ignore[assignment]  # numpy int64 vs int: one type to Numba
        i = start
        while i + 1 < end:
            a = xs[i]
            b = xs[i + 1]
            if a <= W - 1 and b > 0:
                c0 = a if a > 0 else 0  # type: ignore[assignment]  # numpy int64 vs int: one type to Numba
                c1 = b if b < W else W
                if c0 < c1:
                    if ns < cap:
                        srow[ns] = y
                        sc0[ns] = c0
                        sc1[ns] = c1
                    ns += 1
            i += 2
        start = end
    return ns, 0


# ----------------------------------------------------------------------------- all touched
@njit(cache=True, nogil=True, inline="always")
def _point(iy, ix, srow, sc0, sc1, ns):
    cap = srow.size
    if ns > 0 and ns <= cap and srow[ns - 1] == iy and sc1[ns - 1] == ix:
        sc1[ns - 1] = ix + 1
        return ns
    if ns < cap:
        srow[ns] = iy
        sc0[ns] = ix
        sc1[ns] = ix + 1
    return ns + 1


@njit(cache=True, nogil=True)
def _walk(px, py, rs, nr, W, H, srow, sc0, sc1, ns):
    """GDALdllImageLineAllTouched(bIntersectOnly=TRUE) over the rings of one polygon."""
    eps = EPS_INTERSECT_ONLY
    fW = float(W)
    fH = float(H)
    for r in range(nr):
        a0 = rs[r]
        a1 = rs[r + 1]
        for j in range(a0 + 1, a1):
            dfX = px[j - 1]
            dfY = py[j - 1]
            dfXEnd = px[j]
            dfYEnd = py[j]
            if ((dfY < 0.0 and dfYEnd < 0.0) or (dfY > fH and dfYEnd > fH)
                    or (dfX < 0.0 and dfXEnd < 0.0) or (dfX > fW and dfXEnd > fW)):
                continue
            if dfX > dfXEnd:
                t = dfX
                dfX = dfXEnd
                dfXEnd = t
                t = dfY
                dfY = dfYEnd
                dfYEnd = t
            # near-vertical
            if np.floor(dfX) == np.floor(dfXEnd) or abs(dfX - dfXEnd) < 0.01:
                if abs(dfX - _cround(dfX)) < eps and abs(dfXEnd - _cround(dfXEnd)) < eps:
                    continue
                if dfYEnd < dfY:
                    t = dfY
                    dfY = dfYEnd
                    dfYEnd = t
                fx = np.floor(dfXEnd)
                if fx < 0.0 or fx >= fW:
                    continue
                ix = np.int64(fx)
                fy0 = np.floor(dfY)
                fy1 = np.floor(dfYEnd - eps)
                if fy0 < 0.0:
                    fy0 = 0.0
                if fy1 > fH - 1.0:
                    fy1 = fH - 1.0
                if fy0 > fy1:
                    continue
                for iy in range(np.int64(fy0), np.int64(fy1) + 1):
                    ns = _point(iy, ix, srow, sc0, sc1, ns)
                continue
            # near-horizontal
            if np.floor(dfY) == np.floor(dfYEnd) or abs(dfY - dfYEnd) < 0.01:
                if abs(dfY - _cround(dfY)) < eps and abs(dfYEnd - _cround(dfYEnd)) < eps:
                    continue
                fy = np.floor(dfY)
                if fy < 0.0 or fy >= fH:
                    continue
                iy = np.int64(fy)  # type: ignore[assignment]  # numpy int64 vs int: one type to Numba
                fx0 = np.floor(dfX)
                fx1 = np.floor(dfXEnd - eps)
                if fx0 < 0.0:
                    fx0 = 0.0
                if fx1 > fW - 1.0:
                    fx1 = fW - 1.0
                if fx0 > fx1:
                    continue
                for ix in range(np.int64(fx0), np.int64(fx1) + 1):  # type: ignore[assignment]  # numpy int64 vs int: one type to Numba
                    ns = _point(iy, ix, srow, sc0, sc1, ns)
                continue
            # general case, left to right
            slope = (dfYEnd - dfY) / (dfXEnd - dfX)
            if dfXEnd > fW:
                dfYEnd -= (dfXEnd - fW) * slope
                dfXEnd = fW
            if dfX < 0.0:
                dfY += (0.0 - dfX) * slope
                dfX = 0.0
            if dfYEnd > dfY:
                if dfY < 0.0:
                    dfX += (0.0 - dfY) / slope
                    dfY = 0.0
                if dfYEnd >= fH:
                    dfXEnd += (dfYEnd - fH) / slope      # sic (GDAL 3.10)
                    if dfXEnd > fW:
                        dfXEnd = fW
            else:
                if dfY >= fH:
                    dfX += (fH - dfY) / slope
                    dfY = fH
                if dfYEnd < 0.0:
                    dfXEnd -= (dfYEnd - 0.0) / slope
            while dfX >= 0.0 and dfX < dfXEnd:
                fx = np.floor(dfX)
                fy = np.floor(dfY)
                if fy >= 0.0 and fy < fH and fx < fW:
                    ns = _point(np.int64(fy), np.int64(fx), srow, sc0, sc1, ns)
                step_x = np.floor(dfX + 1.0) - dfX
                step_y = step_x * slope
                if np.floor(dfY + step_y) == fy:
                    dfX += step_x
                    dfY += step_y
                elif slope < 0.0:
                    step_y = fy - dfY
                    if step_y > -0.000000001:
                        step_y = -0.000000001
                    step_x = step_y / slope
                    dfX += step_x
                    dfY += step_y
                else:
                    step_y = (fy + 1.0) - dfY
                    if step_y < 0.000000001:
                        step_y = 0.000000001
                    step_x = step_y / slope
                    dfX += step_x
                    dfY += step_y
    return ns


# ----------------------------------------------------------------------------- merge
@njit(cache=True, nogil=True)
def _merge(srow, sc0, sc1, n, rowcnt, t0, t1):
    """Sort spans by (row, c0) and merge overlapping or adjacent ones, in place.

    Spans already in order (one polygon, pixel-centre rule) take a linear pass; others
    are bucketed by row (``rowcnt``, size >= rows spanned + 1; ``t0``/``t1``, size >= n)
    and each row's few spans insertion-sorted.
    """
    if n == 0:
        return 0
    ordered = True
    for i in range(1, n):
        if srow[i] < srow[i - 1] or (srow[i] == srow[i - 1] and sc0[i] < sc0[i - 1]):
            ordered = False
            break
    if not ordered:
        rmin = srow[0]
        rmax = srow[0]
        for i in range(1, n):
            if srow[i] < rmin:
                rmin = srow[i]
            if srow[i] > rmax:
                rmax = srow[i]
        nr = rmax - rmin + 1
        for k in range(nr + 1):
            rowcnt[k] = 0
        for i in range(n):
            rowcnt[srow[i] - rmin + 1] += 1
        for k in range(nr):
            rowcnt[k + 1] += rowcnt[k]
        for i in range(n):
            k = srow[i] - rmin
            q = rowcnt[k]
            t0[q] = sc0[i]
            t1[q] = sc1[i]
            rowcnt[k] = q + 1
        start = 0
        for k in range(nr):                      # rowcnt[k] is now the end of row k
            end = rowcnt[k]
            for a in range(start + 1, end):
                v0 = t0[a]
                v1 = t1[a]
                b = a - 1
                while b >= start and t0[b] > v0:
                    t0[b + 1] = t0[b]
                    t1[b + 1] = t1[b]
                    b -= 1
                t0[b + 1] = v0
                t1[b + 1] = v1
            for a in range(start, end):
                srow[a] = rmin + k
                sc0[a] = t0[a]
                sc1[a] = t1[a]
            start = end
    m = 0
    for i in range(1, n):
        if srow[i] == srow[m] and sc0[i] <= sc1[m]:
            if sc1[i] > sc1[m]:
                sc1[m] = sc1[i]
        else:
            m += 1
            srow[m] = srow[i]
            sc0[m] = sc0[i]
            sc1[m] = sc1[i]
    return m + 1


# ----------------------------------------------------------------------------- one geometry
@njit(cache=True, nogil=True, inline="always")
def _geom_runs(g, x, y, ring_off, part_off, geom_off, inv0, inv1, inv3, inv5, W, H, all_touched,
               px, py, rs, rowcnt, xs, srow, sc0, sc1, t0, t1):
    """Runs of geometry ``g`` in srow/sc0/sc1[:m]; returns m and the (grown) scratch."""
    while True:
        ns = 0
        need_xs = 0
        for p in range(geom_off[g], geom_off[g + 1]):
            r0 = part_off[p]
            r1 = part_off[p + 1]
            nr = r1 - r0
            nv = ring_off[r1] - ring_off[r0]
            if nv == 0:
                continue
            if nv > px.size:
                px = _grow_f8(px, nv)
                py = _grow_f8(py, nv)
            if nr + 1 > rs.size:
                rs = _grow_i8(rs, nr + 1)
            o = 0
            for r in range(r0, r1):
                s = ring_off[r]
                n = ring_off[r + 1] - s
                rs[r - r0] = o
                if _is_clockwise(x, y, s, n):
                    for i in range(n):
                        px[o + i] = inv0 + x[s + i] * inv1
                        py[o + i] = inv3 + y[s + i] * inv5
                else:
                    for i in range(n):
                        px[o + i] = inv0 + x[s + n - 1 - i] * inv1
                        py[o + i] = inv3 + y[s + n - 1 - i] * inv5
                o += n
            rs[nr] = o
            if all_touched:
                ns = _walk(px, py, rs, nr, W, H, srow, sc0, sc1, ns)
            ns, nx = _fill(px, py, rs, nr, W, H, rowcnt, xs, srow, sc0, sc1, ns)
            if nx > xs.size:
                need_xs = nx
                break
        if need_xs > 0:
            xs = _grow_i8(xs, need_xs)
            continue
        if ns > srow.size:
            srow = _grow_i8(srow, ns)
            sc0 = _grow_i8(sc0, ns)
            sc1 = _grow_i8(sc1, ns)
            continue
        if ns > t0.size:
            t0 = _grow_i8(t0, ns)
            t1 = _grow_i8(t1, ns)
        m = _merge(srow, sc0, sc1, ns, rowcnt, t0, t1)
        return m, px, py, rs, xs, srow, sc0, sc1, t0, t1


@njit(cache=True, nogil=True)
def _chunk_runs(g0, g1, x, y, ring_off, part_off, geom_off, inv0, inv1, inv3, inv5, W, H, all_touched):
    """Runs of geometries g0..g1-1: (counts int64, npix int64, row, c0, c1 int32)."""
    G = g1 - g0
    counts = np.zeros(G, np.int64)
    npix = np.zeros(G, np.int64)
    out_r = np.empty(max(64, 32 * G), np.int32)
    out_a = np.empty(out_r.size, np.int32)
    out_b = np.empty(out_r.size, np.int32)
    px = np.empty(256, np.float64)
    py = np.empty(256, np.float64)
    rs = np.empty(16, np.int64)
    rowcnt = np.empty(H + 2, np.int64)
    xs = np.empty(1024, np.int64)
    srow = np.empty(1024, np.int64)
    sc0 = np.empty(1024, np.int64)
    sc1 = np.empty(1024, np.int64)
    t0 = np.empty(1024, np.int64)
    t1 = np.empty(1024, np.int64)
    n = 0
    for g in range(g0, g1):
        m, px, py, rs, xs, srow, sc0, sc1, t0, t1 = _geom_runs(
            g, x, y, ring_off, part_off, geom_off, inv0, inv1, inv3, inv5, W, H, all_touched,
            px, py, rs, rowcnt, xs, srow, sc0, sc1, t0, t1)
        if n + m > out_r.size:
            cap = max(n + m, 2 * out_r.size)
            nr_ = np.empty(cap, np.int32)
            na_ = np.empty(cap, np.int32)
            nb_ = np.empty(cap, np.int32)
            nr_[:n] = out_r[:n]
            na_[:n] = out_a[:n]
            nb_[:n] = out_b[:n]
            out_r, out_a, out_b = nr_, na_, nb_
        tot = 0
        for i in range(m):
            out_r[n + i] = srow[i]
            out_a[n + i] = sc0[i]
            out_b[n + i] = sc1[i]
            tot += sc1[i] - sc0[i]
        n += m
        counts[g - g0] = m
        npix[g - g0] = tot
    return counts, npix, out_r[:n].copy(), out_a[:n].copy(), out_b[:n].copy()


# ----------------------------------------------------------------------------- Python API
def inverse_geotransform(x0: float, y0: float, xres: float, yres: float) -> tuple[float, float, float, float]:
    """GDAL's inverse geotransform of a north-up grid: (inv0, inv1, inv3, inv5).

    ``px = inv0 + X * inv1`` and ``py = inv3 + Y * inv5`` (pixel/line coordinates), with
    GDALInvGeoTransform's no-rotation special case: ``inv0 = -x0 / xres``,
    ``inv1 = 1 / xres``, ``inv3 = -y0 / -yres``, ``inv5 = 1 / -yres``.
    """
    gt1, gt5 = float(xres), -float(yres)
    return -float(x0) / gt1, 1.0 / gt1, -float(y0) / gt5, 1.0 / gt5


def polygon_buffers(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                np.ndarray]:
    """Flat coordinate buffers of the polygonal geometries.

    One ``shapely.get_coordinates`` call for all vertices; the ring structure comes from
    per-geometry counts, and only polygons with holes and MultiPolygons are taken apart
    (``get_parts``/``get_rings``).

    Parameters
    ----------
    geoms : ndarray of shapely geometries (or None), shape (G,)

    Returns
    -------
    (x, y, ring_off, part_off, geom_off, polygonal)
        ``x``, ``y`` float64 (N,) vertex coordinates (strided views of one (N, 2) array) as stored (ring orientation and
        start kept; Z dropped); ``ring_off`` int64 (R + 1,) vertex offsets of the rings;
        ``part_off`` int64 (Q + 1,) ring offsets of the polygons (exterior ring first);
        ``geom_off`` int64 (G + 1,) polygon offsets of each geometry (none for empty or
        non-polygonal geometries); ``polygonal`` bool (G,) True for non-empty
        Polygon/MultiPolygon.
    """
    geoms = np.asarray(geoms, dtype=object)
    G = geoms.size
    types = shapely.get_type_id(geoms)
    polygonal = ((types == POLYGON) | (types == MULTIPOLYGON)) & ~shapely.is_empty(geoms)
    sel = np.flatnonzero(polygonal)
    pg = geoms[sel]
    simple = (types[sel] == POLYGON) & (shapely.get_num_interior_rings(pg) == 0)
    # parts (polygons) and their rings, in geometry order
    cx = np.flatnonzero(~simple)
    parts, part_geom = shapely.get_parts(pg[cx], return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    part_key = np.concatenate([np.flatnonzero(simple), cx[part_geom]])       # index into sel
    order = np.argsort(part_key, kind="stable")
    n_simple = int(simple.sum())
    # rings per part and ring sizes, for simple parts first, then the taken-apart ones
    rings_per_part = np.concatenate([np.ones(n_simple, np.int64),
                                     np.bincount(ring_part, minlength=parts.size).astype(np.int64)])
    ring_part_key = np.concatenate([np.arange(n_simple), n_simple + ring_part])
    ring_size = np.concatenate([shapely.get_num_coordinates(pg[simple]),
                                shapely.get_num_coordinates(rings)]).astype(np.int64)
    rank = np.empty(order.size, np.int64)                  # part -> its position in geometry order
    rank[order] = np.arange(order.size)
    ring_order = np.argsort(rank[ring_part_key], kind="stable")
    ring_off = np.zeros(ring_size.size + 1, np.int64)
    np.cumsum(ring_size[ring_order], out=ring_off[1:])
    part_off = np.zeros(order.size + 1, np.int64)
    np.cumsum(rings_per_part[order], out=part_off[1:])
    per_geom = np.zeros(G, np.int64)
    per_geom[sel] = np.bincount(part_key, minlength=sel.size)
    geom_off = np.zeros(G + 1, np.int64)
    np.cumsum(per_geom, out=geom_off[1:])
    xy = shapely.get_coordinates(pg)
    if xy.shape[0] != ring_off[-1]:
        raise ValueError(f"coordinate count {xy.shape[0]} does not match the rings ({ring_off[-1]})")
    return (xy[:, 0], xy[:, 1], ring_off, part_off, geom_off,
            polygonal)


def polygon_runs(geoms: np.ndarray, x0: float, y0: float, xres: float, yres: float, width: int,
                 height: int, *, all_touched: bool = False, threads: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of each polygon, rasterized alone, as run-length runs (GDAL's rule).

    Parameters
    ----------
    geoms : ndarray of shapely geometries, shape (G,)
        Polygons/MultiPolygons in the grid's CRS. Empty, None and non-polygonal
        geometries get no runs here and are flagged in the returned ``polygonal``.
    x0, y0 : float
        Upper-left corner of the grid (CRS units).
    xres, yres : float
        Pixel width and height (> 0); the grid is north-up.
    width, height : int
        Grid size in pixels.
    all_touched : bool
        GDAL's ALL_TOUCHED=TRUE instead of the pixel-centre rule.
    threads : int, optional
        Worker threads (default ``numba.get_num_threads()``); the Numba kernel releases
        the GIL.

    Returns
    -------
    run_ptr : int64 ndarray, shape (G + 1,)
    run_row, run_c0, run_c1 : int32 ndarray, shape (R,)
        Row, first column and end column (exclusive) of each run; the runs of a geometry
        are disjoint, non-adjacent and sorted by (row, c0).
    npix : int64 ndarray, shape (G,)
    polygonal : bool ndarray, shape (G,)

    Raises
    ------
    ValueError
        If the pixel sizes are not positive or the grid size is out of range.
    """
    if not (xres > 0 and yres > 0):
        raise ValueError(f"pixel size must be positive, got {xres} x {yres}")
    if width < 0 or height < 0 or width >= 2**31 - 2 or height >= 2**31 - 2:
        raise ValueError(f"grid size {width} x {height} out of range")
    x, y, ring_off, part_off, geom_off, polygonal = polygon_buffers(geoms)
    G = geom_off.size - 1
    inv0, inv1, inv3, inv5 = inverse_geotransform(x0, y0, xres, yres)
    W, H = np.int64(width), np.int64(height)
    nthreads = max(1, threads or numba.get_num_threads())
    nch = 1 if G < 64 else min(G, nthreads * 8)
    bounds = [(k * G // nch, (k + 1) * G // nch) for k in range(nch)]

    def work(b: tuple[int, int]):
        return _chunk_runs(b[0], b[1], x, y, ring_off, part_off, geom_off, inv0, inv1, inv3, inv5, W, H,
                           bool(all_touched))

    if nch == 1 or nthreads == 1:
        parts = [work(b) for b in bounds]
    else:
        with ThreadPoolExecutor(max_workers=nthreads) as ex:
            parts = list(ex.map(work, bounds))
    counts = np.concatenate([q[0] for q in parts]) if parts else np.zeros(0, np.int64)
    npix = np.concatenate([q[1] for q in parts]) if parts else np.zeros(0, np.int64)
    run_ptr = np.zeros(G + 1, np.int64)
    np.cumsum(counts, out=run_ptr[1:])
    if parts:
        run_row, run_c0, run_c1 = (np.concatenate([q[k] for q in parts]) for k in (2, 3, 4))
    else:
        run_row = run_c0 = run_c1 = np.zeros(0, np.int32)
    return run_ptr, run_row, run_c0, run_c1, npix, polygonal


def merge_runs(row: np.ndarray, c0: np.ndarray, c1: np.ndarray, width: int) -> int:
    """Sort runs by (row, c0) and merge overlapping or adjacent ones, in place.

    Parameters
    ----------
    row, c0, c1 : int64 ndarray, shape (n,)
        Runs (``c1`` exclusive, ``0 <= c0 < c1 <= width``), modified in place.
    width : int
        Grid width.

    Returns
    -------
    int
        m: the merged, disjoint runs are ``row[:m], c0[:m], c1[:m]``.
    """
    n = row.size
    if n == 0:
        return 0
    rows = int(row.max() - row.min()) + 2
    return int(_merge(row, c0, c1, n, np.empty(rows, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)))
