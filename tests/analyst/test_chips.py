"""The chip library without HTTP: the pixel-centre window, the stretch forms, the cache (its
secret shared by concurrent processes, its LRU pruning, its path checks), and a chip of a
SYNTHETIC baseline-05.10 product (BOA_ADD_OFFSET -1000, which the real sample predates)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time

import numpy as np
import pytest
import rasterio
from affine import Affine
from synthetic import write_s2_safe

from cbm_ops.analyst import chipcut, chips
from cbm_ops.config import AoiConfig, ApiSettings
from cbm_ops.errors import BadRequest
from cbm_ops.extract.store import MountStore


@pytest.mark.parametrize("x,y,size,want", [
    (500007.0, 5600007.0, 20.0, (0, 0, 2, 2)),         # centres at x 500005, 500015; y 5600015, 5600005
    (500123.0, 5599877.0, 400.0, (-8, -6, 40, 40)),    # 400 m at 10 m: 40 x 40, partly left of / above the image
    (500007.0, 5600007.0, 1.0, (0, 1, 1, 1)),          # smaller than a pixel: the pixel the point is in
])
def test_the_window_holds_the_pixels_whose_centres_are_in_the_square(x, y, size, want):
    t = Affine(10, 0, 500000, 0, -10, 5600020)         # pixel (row r, col c) centre: (500005 + 10 c, 5600015 - 10 r)
    w = chipcut.centre_window(t, x, y, size)
    assert (w.col_off, w.row_off, w.width, w.height) == want
    if size >= 10:                                     # every centre inside the square, none outside
        cx = 500005 + 10 * np.arange(w.col_off - 1, w.col_off + w.width + 1)
        cy = 5600015 - 10 * np.arange(w.row_off - 1, w.row_off + w.height + 1)
        assert (np.abs(cx - x) <= size / 2).tolist() == [False] + [True] * w.width + [False]
        assert (np.abs(cy - y) <= size / 2).tolist() == [False] + [True] * w.height + [False]


def test_lut_forms_and_the_jrc_stretch():
    assert chipcut.parse_lut(None, 3) == ("percentile", [(5.0, 95.0)] * 3)
    assert chipcut.parse_lut("None", 1) == ("percentile", [(5.0, 95.0)])          # the cbm client's default
    assert chipcut.parse_lut("2_98", 3) == ("percentile", [(2.0, 98.0)] * 3)
    assert chipcut.parse_lut("0_10_5_15_1_2", 3) == ("value", [(0, 10), (5, 15), (1, 2)])
    for bad in ("95_5", "a_b", "1_2_3", "0_101"):
        with pytest.raises(BadRequest, match="lut"):
            chipcut.parse_lut(bad, 3)
    a = np.array([[0, 100, 200], [300, 400, 500]], np.uint16)
    out = chipcut.stretch(a, 0, "value", (100, 500))
    assert out.tolist() == [[0, 0, 64], [128, 191, 255]]                           # 255 (x - 100) / 400, nodata 0
    assert chipcut.stretch(np.zeros((2, 2), np.uint16), 0, "percentile", (5, 95)).max() == 0


def test_dates_and_sizes_are_checked():
    assert chips.date_window("2018-06-01", "2018-06-01") == (dt.datetime(2018, 6, 1), dt.datetime(2018, 6, 2))
    for a, b, word in (("2018-6-1", "2018-06-02", "start_date"), ("2018-06-02", "2018-06-01", "before"),
                       ("2018-06-01", "2018-02-30", "end_date")):
        with pytest.raises(BadRequest, match=word):
            chips.date_window(a, b)
    s = ApiSettings.from_env({"CBM_CHIPS_DIR": "/nonexistent"})
    assert chips.check_chipsize(5120, s) == 5120.0
    for v in (0, -1, float("nan"), 5121):
        with pytest.raises(BadRequest, match="chipsize"):
            chips.check_chipsize(v, s)


def _token(root: str) -> str:
    return chips.ChipCache(root).token({"lon": 3.0, "lat": 50.0})


def test_concurrent_processes_share_one_secret(tmp_path):
    """API worker processes started together agree on the chip paths (one key, never half-written)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        tokens = pool.map(_token, [str(tmp_path)] * 8)
    assert len(set(tokens)) == 1 and len(tokens[0]) == 32
    assert oct((tmp_path / ".secret").stat().st_mode & 0o777) == "0o600"
    assert chips.ChipCache(tmp_path, secret="other").token({"lon": 3.0, "lat": 50.0}) != tokens[0]


def test_cache_paths_are_checked_and_the_least_recently_used_go_first(tmp_path):
    cache = chips.ChipCache(tmp_path, max_mb=0.003)       # 3,000 bytes
    dirs = []
    for i in range(4):
        tok = cache.token({"i": i})
        p = cache.path(tok, "x.tif")
        p.parent.mkdir()
        p.write_bytes(b"0" * 1000)
        os.utime(p.parent, (time.time() - 100 + i, time.time() - 100 + i))
        dirs.append(tok)
    assert cache.find(dirs[0], "x.tif") is not None
    for token, name in ((dirs[0], "../x.tif"), (dirs[0], ".secret"), ("../" + dirs[0], "x.tif"), ("zz", "x.tif")):
        assert cache.find(token, name) is None
    assert cache.prune(force=True) == 2                   # 4,000 bytes > 3,000: down to 80 % (the 2 newest stay)
    assert [cache.find(t, "x.tif") is not None for t in dirs] == [False, False, True, True]


def test_a_chip_of_a_baseline_05_product_keeps_dn_and_states_the_offset(tmp_path):
    eodata = tmp_path / "eodata"
    t = dt.datetime(2023, 6, 1, 10, 56, 21)
    b04 = np.arange(1, 101, dtype=np.uint16).reshape(10, 10) + 1000
    name = write_s2_safe(eodata, t, 500000, 5600100, {"B04": b04, "SCL": np.full((5, 5), 4, np.uint8)})
    cfg = AoiConfig(name="syn", start_date=dt.date(2023, 1, 1), store={"root": str(eodata)})
    sc = chips.Scene("syn", 1, name, t, "s2", None, "05.10")
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(32631, 4326, always_xy=True).transform(500050, 5600050)
    cut = chips.cut_scene(MountStore(eodata), cfg, sc, ["B04"], lon, lat, 40.0)
    band, chip, bf = cut.bands[0]
    assert bf.offset == -1000 and chip.data.shape == (4, 4)
    np.testing.assert_array_equal(chip.data, b04[3:7, 3:7])                        # the file's DN, unchanged
    maker = chips.ChipMaker(ApiSettings(chips_dir=tmp_path / "cache"), lambda c: MountStore(eodata))
    idx, skipped = maker.raw([(cfg, sc)], "B04", lon, lat, 40.0, {"test": 1})
    assert skipped == 0 and idx["dates"] == ["20230601T105621"]
    with rasterio.open(maker.cache.root / idx["chips"][0].removeprefix("/static/tmp/")) as ds:
        assert ds.scales == (1e-4,) and ds.offsets == (pytest.approx(-0.1),)         # reflectance = DN/1e4 - 0.1
        assert "BOA_ADD_OFFSET -1000" in ds.tags()["CBM_VALUES"]
    missing = chips.Scene("syn", 2, name.replace("20230601T105621", "20230602T105621"), t, "s2", None, "05.10")
    with pytest.raises(Exception, match="none of the 1 products"):
        maker.raw([(cfg, missing)], "B04", lon, lat, 40.0, {"test": 2})
