"""Numba kernels against numpy on random labels and values (property tests, synthetic data)."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cbm_ops.grid import kernels

STAT_ORDER = ("count", "mean", "std", "min", "max", "p25", "p50", "p75")


def index_from_labels(labels: np.ndarray, n_parcels: int):
    """Run-length index of a label raster (parcel p has label p + 1)."""
    lab, row, a, b = kernels.label_runs(labels.astype(np.int32), 0, 0)
    lab = lab - 1
    order = np.argsort(lab, kind="stable")
    lab, row, a, b = lab[order], row[order], a[order], b[order]
    ptr = np.zeros(n_parcels + 1, np.int64)
    np.cumsum(np.bincount(lab, minlength=n_parcels), out=ptr[1:])
    npix = np.bincount(lab, weights=b - a, minlength=n_parcels)
    return ptr, row, a, b, int(npix.max()) if npix.size else 0


def numpy_stats(v: np.ndarray) -> list[float]:
    # The kernels interpolate percentiles in float64; numpy would interpolate float32
    # input in float32, which loses digits when the result is near zero.
    w = v.astype(np.float64)
    return [v.size, w.mean(), w.std(), w.min(), w.max(), *np.percentile(w, [25, 50, 75])]


@st.composite
def scenes(draw, float_values: bool):
    h = draw(st.integers(1, 24))
    w = draw(st.integers(1, 24))
    n = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n + 1, (h, w))
    if draw(st.booleans()):                      # blocky parcels with long runs
        labels = np.sort(labels, axis=1)
    if float_values:
        img = rng.normal(0.05, draw(st.sampled_from([1e-4, 0.02, 3.0])), (h, w)).astype(np.float32)
        img[rng.random((h, w)) < draw(st.floats(0, 0.5))] = np.nan
        nodata = draw(st.sampled_from([None, 0.0]))
        if nodata is not None:
            img[rng.random((h, w)) < 0.2] = 0.0
    else:
        hi = draw(st.sampled_from([3, 300, 20000, 65535]))
        img = rng.integers(0, hi + 1, (h, w)).astype(np.uint16)
        nodata = draw(st.sampled_from([None, 0, 65535]))
    return labels, img, nodata, n


def check(labels, img, nodata, n, rtol):
    ptr, row, a, b, maxpix = index_from_labels(labels, n)
    out = kernels.parcel_stats(img, 0, 0, ptr, row, a, b, maxpix, nodata)
    for p in range(n):
        v = img[labels == p + 1]
        if np.issubdtype(v.dtype, np.floating):
            v = v[~np.isnan(v)]
        if nodata is not None:
            v = v[v != nodata]
        if v.size == 0:
            assert out[p, 0] == 0
            continue
        np.testing.assert_allclose(out[p], numpy_stats(v), rtol=rtol, atol=0)


@settings(max_examples=300, deadline=None)
@given(scenes(float_values=False))
def test_integer_stats_equal_numpy(case):
    check(*case, rtol=1e-12)


@settings(max_examples=300, deadline=None)
@given(scenes(float_values=True))
def test_float_stats_equal_numpy(case):
    labels, img, nodata, n = case
    check(labels, img, nodata, n, rtol=2e-6)


def test_single_pixel_empty_and_all_nodata_parcels():
    labels = np.array([[1, 0, 2], [0, 3, 3]])
    img = np.array([[7, 9, 0], [5, 0, 0]], np.uint16)
    ptr, row, a, b, maxpix = index_from_labels(labels, 4)      # parcel 4 has no pixels
    out = kernels.parcel_stats(img, 0, 0, ptr, row, a, b, maxpix, 0)
    np.testing.assert_array_equal(out[0], [1, 7, 0, 7, 7, 7, 7, 7])   # single pixel
    assert out[1, 0] == 0 and out[2, 0] == 0 and out[3, 0] == 0      # all nodata / empty
    assert np.isnan(out[1:, 1:]).all()


def test_window_clipping_matches_a_cropped_image():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, (40, 50))
    img = rng.integers(1, 1000, (40, 50)).astype(np.uint16)
    ptr, row, a, b, maxpix = index_from_labels(labels, 5)
    r0, c0 = 7, 11
    sub = img[r0:r0 + 20, c0:c0 + 25]
    out = kernels.parcel_stats(sub, r0, c0, ptr, row, a, b, maxpix, None)
    sub_labels = labels[r0:r0 + 20, c0:c0 + 25]
    for p in range(5):
        v = sub[sub_labels == p + 1]
        np.testing.assert_allclose(out[p], numpy_stats(v), rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(1, 30))
def test_class_histograms_and_json_equal_numpy(seed, h, w):
    rng = np.random.default_rng(seed)
    n = 6
    labels = rng.integers(0, n + 1, (h, w))
    scl = rng.integers(0, 12, (h, w)).astype(np.uint8)
    ptr, row, a, b, _ = index_from_labels(labels, n)
    counts = kernels.parcel_histograms(scl, 0, 0, ptr, row, a, b, 12, 0, True)
    pids = np.arange(100, 100 + n, dtype=np.int32)
    text, nrows = kernels.hist_copy_text(pids, 42, counts)
    lines = bytes(text).decode().splitlines()
    assert len(lines) == nrows
    got = {int(pid): (int(obs), json.loads(h_)) for pid, obs, h_ in (ln.split("\t") for ln in lines)}
    for p in range(n):
        v = scl[(labels == p + 1) & (scl != 0)]
        expect = {str(k): int(c) for k, c in enumerate(np.bincount(v, minlength=12)) if c}
        if not expect:
            assert int(pids[p]) not in got
        else:
            assert got[int(pids[p])] == (42, expect)


def test_label_runs_reconstruct_the_raster():
    rng = np.random.default_rng(5)
    labels = np.sort(rng.integers(0, 9, (17, 23)), axis=1).astype(np.int32)
    lab, row, a, b = kernels.label_runs(labels, 100, 200)
    back = np.zeros_like(labels)
    for lb, r, c0, c1 in zip(lab, row, a, b, strict=True):
        assert (back[r - 100, c0 - 200:c1 - 200] == 0).all()
        back[r - 100, c0 - 200:c1 - 200] = lb
    np.testing.assert_array_equal(back, labels)
