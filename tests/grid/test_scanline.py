"""Scanline rasterizer (cbm_ops.grid.scanline): every polygon gets exactly GDAL's pixels.

The reference is ``rasterio.features.rasterize`` of each polygon ALONE on the same grid
(the GDAL bundled with rasterio, ``rasterio.__gdal_version__``), with the pixel-centre
rule and with ALL_TOUCHED. Polygons are SYNTHETIC and adversarial (hypothesis): vertices
exactly on pixel centres and corners or a hair off them, edges on pixel-centre lines,
holes, multipolygons with overlapping parts, slivers, self-touching and self-crossing
rings, both orientations, polygons partly or wholly outside the grid, tiny and huge
polygons, square and non-square pixels, origins of real tiles. ``CBM_SCANLINE_EXAMPLES``
sets the number of hypothesis examples per test (default 150).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.features import rasterize

from cbm_ops.grid import Grid, GridError, build_index, scanline
from cbm_ops.grid import index as grid_index

EXAMPLES = int(os.environ.get("CBM_SCANLINE_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


# ----------------------------------------------------------------------------- helpers
def reference(geom, grid: Grid, all_touched: bool) -> np.ndarray:
    """GDAL's pixels of one geometry rasterized alone (bool, (H, W))."""
    return rasterize([(geom, 1)], out_shape=(grid.height, grid.width), transform=grid.transform,
                     all_touched=all_touched, fill=0, dtype="uint8").astype(bool)


def masks(run_ptr, row, c0, c1, grid: Grid) -> list[np.ndarray]:
    out = []
    for g in range(run_ptr.size - 1):
        m = np.zeros((grid.height, grid.width), bool)
        for i in range(run_ptr[g], run_ptr[g + 1]):
            m[row[i], c0[i]:c1[i]] = True
        out.append(m)
    return out


def assert_runs_well_formed(run_ptr, row, c0, c1, npix, grid: Grid) -> None:
    assert run_ptr[0] == 0 and np.all(np.diff(run_ptr) >= 0) and run_ptr[-1] == row.size
    assert row.dtype == c0.dtype == c1.dtype == np.int32 and run_ptr.dtype == npix.dtype == np.int64
    assert np.all((row >= 0) & (row < grid.height) & (c0 >= 0) & (c0 < c1) & (c1 <= grid.width))
    for g in range(run_ptr.size - 1):
        s, e = run_ptr[g], run_ptr[g + 1]
        r, a, b = row[s:e].astype(np.int64), c0[s:e], c1[s:e]
        # sorted by (row, c0), disjoint and not adjacent within a row
        assert np.all((r[1:] > r[:-1]) | ((r[1:] == r[:-1]) & (a[1:] > b[:-1])))
        assert npix[g] == int((b - a).sum())


def gdal_writes_past_right_edge(geom, grid: Grid) -> bool:
    """Whether GDAL's all-touched line walk would step past the raster's right edge.

    GDALdllImageLineAllTouched (GDAL 3.10) clips an edge to x <= W, then, when the
    clipped edge rounds to non-rising, moves its end by ``-dfYEnd / dfSlope``, which can
    take it past W again: the walk then burns column W, i.e. GDAL writes the first pixel
    of the next row or past its buffer (heap corruption; see docs/rasterization.md).
    Ours drops such out-of-raster points. Only edges with a vertex on or within
    rounding of the right edge line are concerned; the reference cannot be computed
    safely for them, so they are left out of the comparison (and counted).
    """
    inv0, inv1, inv3, inv5 = scanline.inverse_geotransform(grid.x0, grid.y0, grid.res, grid.res_y)
    W, H = float(grid.width), float(grid.height)
    for ring in shapely.get_rings(shapely.get_parts(geom)):
        xy = shapely.get_coordinates(ring)
        px, py = inv0 + xy[:, 0] * inv1, inv3 + xy[:, 1] * inv5
        for k in range(len(px) - 1):
            x, y, xe, ye = px[k], py[k], px[k + 1], py[k + 1]
            if (y < 0 and ye < 0) or (y > H and ye > H) or (x < 0 and xe < 0) or (x > W and xe > W):
                continue
            if x > xe:
                x, xe, y, ye = xe, x, ye, y
            if np.floor(x) == np.floor(xe) or abs(x - xe) < .01:
                continue
            if np.floor(y) == np.floor(ye) or abs(y - ye) < .01:
                continue
            slope = (ye - y) / (xe - x)
            if xe > W:
                ye -= (xe - W) * slope
                xe = W
            if x < 0:
                y += (0.0 - x) * slope
            if not ye > y and ye < 0:
                xe -= (ye - 0) / slope
            if xe > W:
                return True
    return False


SKIPPED = {"gdal_overflow": 0, "compared": 0}


def assert_exact(geoms, grid: Grid) -> None:
    geoms = np.asarray(geoms, dtype=object)
    for all_touched in (False, True):
        run_ptr, row, c0, c1, npix, _ = scanline.polygon_runs(
            geoms, grid.x0, grid.y0, grid.res, grid.res_y, grid.width, grid.height, all_touched=all_touched)
        assert_runs_well_formed(run_ptr, row, c0, c1, npix, grid)
        for g, (geom, got) in enumerate(zip(geoms, masks(run_ptr, row, c0, c1, grid), strict=True)):
            if all_touched and gdal_writes_past_right_edge(geom, grid):
                SKIPPED["gdal_overflow"] += 1
                continue
            SKIPPED["compared"] += 1
            ref = reference(geom, grid, all_touched)
            if not np.array_equal(got, ref):
                diff = np.argwhere(got != ref)[:5].tolist()
                pytest.fail(f"all_touched={all_touched} geometry {g} {shapely.to_wkt(geom, rounding_precision=17)} "
                            f"on {grid}: {int(ref.sum())} GDAL pixels, {int(got.sum())} ours, first "
                            f"differences (row, col) {diff}")


# ----------------------------------------------------------------------------- strategies
ORIGINS = [0.0, 499980.0, 600000.0, 465181.0522318204, -1234.5678, 300000.3]
TOPS = [0.0, 5700000.0, 5080254.63349641, 100.0, 4000000.7]
RES = [10.0, 20.0, 60.0, 1.0, 0.5, 3.0, 9.9948, 9.9975, 9.995, 9.997, 0.1, 30.000001]


@st.composite
def grids(draw) -> Grid:
    res = draw(st.sampled_from(RES))
    res_y = draw(st.one_of(st.just(res), st.sampled_from(RES)))
    return Grid(epsg=0, res=res, res_y=res_y, x0=draw(st.sampled_from(ORIGINS)), y0=draw(st.sampled_from(TOPS)),
                width=draw(st.integers(1, 24)), height=draw(st.integers(1, 24)))


def coord(span: float):
    """Pixel-space coordinate: corners, centres, a hair off them, or anywhere."""
    k = st.integers(-3, int(span) + 3)
    hair = st.sampled_from([1e-12, -1e-12, 1e-9, -1e-9, 1e-6, -1e-6, 2e-4, -2e-4])
    return st.one_of(
        k.map(float),                                        # pixel corner lines
        k.map(lambda i: i + 0.5),                            # pixel centre lines
        st.tuples(k, hair).map(lambda t: t[0] + 0.5 + t[1]),
        st.tuples(k, hair).map(lambda t: t[0] + t[1]),
        st.floats(-3.0, span + 3.0, allow_nan=False),
        st.floats(-200.0, span + 200.0, allow_nan=False),     # partly far outside
    )


def to_world(grid: Grid, uv):
    """Pixel (u, v) to world coordinates: X = x0 + u * xres, Y = y0 - v * yres."""
    return [(grid.x0 + u * grid.res, grid.y0 - v * grid.res_y) for u, v in uv]


@st.composite
def rings_uv(draw, grid: Grid, simple: bool):
    n = draw(st.integers(3, 12))
    pts = draw(st.lists(st.tuples(coord(grid.width), coord(grid.height)), min_size=n, max_size=n))
    if simple:                                   # star-shaped around the mean: a simple ring
        c = np.mean(pts, axis=0)
        pts = sorted(pts, key=lambda p: np.arctan2(p[1] - c[1], p[0] - c[0]))
    rot = draw(st.integers(0, len(pts) - 1))
    pts = pts[rot:] + pts[:rot]
    if draw(st.booleans()):
        pts = pts[::-1]
    return pts


@st.composite
def polygons(draw, grid: Grid):
    kind = draw(st.sampled_from(["random", "simple", "box", "holes", "sliver", "touching", "tiny", "huge"]))
    W, H = grid.width, grid.height
    if kind in ("random", "simple"):
        ring = draw(rings_uv(grid, simple=kind == "simple"))
        return shapely.Polygon(to_world(grid, ring))
    if kind == "box":                            # edges on corner or centre lines
        u = sorted(draw(st.lists(coord(W), min_size=2, max_size=2)))
        v = sorted(draw(st.lists(coord(H), min_size=2, max_size=2)))
        ring = [(u[0], v[0]), (u[1], v[0]), (u[1], v[1]), (u[0], v[1])]
        if draw(st.booleans()):
            ring = ring[::-1]
        return shapely.Polygon(to_world(grid, ring))
    if kind == "holes":
        outer = draw(rings_uv(grid, simple=True))
        c = np.mean(outer, axis=0)
        holes = []
        for f in draw(st.lists(st.sampled_from([0.2, 0.5, 0.7, 1.0]), min_size=1, max_size=2)):
            hole = [(c[0] + (p[0] - c[0]) * f, c[1] + (p[1] - c[1]) * f) for p in outer]
            if draw(st.booleans()):
                hole = hole[::-1]
            holes.append(to_world(grid, hole))
        return shapely.Polygon(to_world(grid, outer), holes)
    if kind == "sliver":                         # thinner than a pixel, any direction
        (u0, v0), (u1, v1) = draw(st.lists(st.tuples(coord(W), coord(H)), min_size=2, max_size=2))
        w = draw(st.sampled_from([1e-9, 1e-4, 0.01, 0.3, 0.49, 0.5]))
        d = np.hypot(u1 - u0, v1 - v0) or 1.0
        nu, nv = -(v1 - v0) / d * w, (u1 - u0) / d * w
        ring = [(u0, v0), (u1, v1), (u1 + nu, v1 + nv), (u0 + nu, v0 + nv)]
        if draw(st.booleans()):
            ring = ring[:3]
        return shapely.Polygon(to_world(grid, ring))
    if kind == "touching":                       # a ring that touches itself at a vertex
        u0, v0 = draw(coord(W)), draw(coord(H))
        s = draw(st.sampled_from([0.5, 1.0, 2.0, 3.5, 7.0]))
        ring = [(u0, v0), (u0 + 2 * s, v0), (u0 + s, v0 + s), (u0 + 2 * s, v0 + 2 * s), (u0, v0 + 2 * s),
                (u0 + s, v0 + s)]
        if draw(st.booleans()):
            ring = ring[::-1]
        return shapely.Polygon(to_world(grid, ring))
    if kind == "tiny":
        u0, v0 = draw(coord(W)), draw(coord(H))
        s = draw(st.sampled_from([1e-6, 0.01, 0.2, 0.5]))
        return shapely.Polygon(to_world(grid, [(u0, v0), (u0 + s, v0 + s / 3), (u0 + s / 2, v0 + s)]))
    # huge: much larger than the grid, maybe with the grid inside a hole
    m = draw(st.sampled_from([100.0, 1e4]))
    outer = [(-m, -m * 0.9), (W + m, -m), (W + m * 1.1, H + m), (-m, H + m)]
    holes = []
    if draw(st.booleans()):
        holes.append(to_world(grid, [(-1.5, -1.5), (W * 0.5, -2.0), (W + 1.5, H * 0.5 + 0.5), (0.5, H + 1.5)]))
    return shapely.Polygon(to_world(grid, outer), holes)


@st.composite
def geometries(draw, grid: Grid):
    if draw(st.integers(0, 4)) == 0:            # parts may overlap (invalid, GDAL unites them)
        return shapely.MultiPolygon(draw(st.lists(polygons(grid), min_size=2, max_size=3)))
    return draw(polygons(grid))


@st.composite
def cases(draw):
    grid = draw(grids())
    return grid, draw(st.lists(geometries(grid), min_size=1, max_size=6))


# ----------------------------------------------------------------------------- property tests
@SETTINGS
@given(cases())
def test_every_polygon_gets_exactly_gdal_pixels(case):
    grid, geoms = case
    assert_exact(geoms, grid)


@SETTINGS
@given(grids(), st.data())
def test_world_coordinates_on_grid_ties(grid, data):
    """Vertices at multiples of half a pixel in world units (real parcel data lie on
    such values): pixel centres exactly on edges, edges on pixel-centre lines."""
    def world(span, x0, res):
        return st.integers(-4, 2 * span + 4).map(lambda k: x0 + k * (res / 2))
    geoms = []
    for _ in range(data.draw(st.integers(1, 4))):
        n = data.draw(st.integers(3, 8))
        xs = data.draw(st.lists(world(grid.width, grid.x0, grid.res), min_size=n, max_size=n))
        ys = data.draw(st.lists(world(grid.height, grid.y0 - grid.height * grid.res_y, grid.res_y),
                                min_size=n, max_size=n))
        geoms.append(shapely.Polygon(list(zip(xs, ys, strict=True))))
    assert_exact(geoms, grid)


# ----------------------------------------------------------------------------- fixed cases
def test_known_cases_against_gdal():
    """Hand-made adversarial cases on a 10 m grid and on a non-square one."""
    for grid in (Grid(epsg=0, res=10.0, x0=499980.0, y0=5700000.0, width=12, height=10),
                 Grid(epsg=0, res=9.9948, res_y=9.9975, x0=465181.0522318204, y0=5080254.63349641,
                      width=12, height=10)):
        def X(u, g=grid):
            return g.x0 + u * g.res

        def Y(v, g=grid):
            return g.y0 - v * g.res_y

        geoms = [
            shapely.box(X(0.5), Y(4.5), X(4.5), Y(0.5)),                 # all edges on centre lines
            shapely.box(X(1), Y(5), X(5), Y(1)),                         # edges on corner lines
            shapely.Polygon([(X(0.5), Y(0.5)), (X(6.5), Y(3.5)), (X(0.5), Y(6.5))]),   # vertices on centres
            shapely.box(X(-3), Y(20), X(30), Y(-4)),                     # larger than the grid
            shapely.box(X(20), Y(3), X(30), Y(1)),                       # outside
            shapely.box(X(2.2), Y(2.4), X(2.3), Y(2.6)),                 # smaller than a pixel
            shapely.Polygon([(X(0), Y(0)), (X(11), Y(9)), (X(11), Y(9.001))]),        # sliver
            shapely.box(X(0.5), Y(8.5), X(10.5), Y(0.5)).difference(shapely.box(X(2.5), Y(6.5), X(8.5), Y(2.5))),
            shapely.MultiPolygon([shapely.box(X(1), Y(4), X(4), Y(1)), shapely.box(X(3), Y(6), X(6), Y(3))]),
        ]
        assert_exact(geoms, grid)


def test_gdal_all_touched_overflow_is_not_reproduced():
    """GDAL's all-touched walk steps past the right edge for this SYNTHETIC self-crossing
    polygon (an edge from a vertex exactly on the right edge line, x = W, outwards): it
    burns pixel (0, W), which lands on (1, 0) of its buffer. Ours keeps every other GDAL
    pixel and not that one."""
    g = shapely.from_wkt(
        "POLYGON ((499980.9 -0.30000000000000004, 499979.95 -0.05000000000000004, 499980.3 0.09999999999999998, "
        "499980.9 -0.15000000000000002, 499980.6 -0.25000000000000006, 499980.6 -0.35000000000000003, "
        "499980.65 -0.4, 499980.8 0.14999999999999997, 499980.9 -0.30000000000000004))")
    grid = Grid(epsg=0, res=0.1, x0=499980.0, y0=0.0, width=8, height=3)
    assert gdal_writes_past_right_edge(g, grid)
    ref = reference(g, grid, True)
    run_ptr, row, c0, c1, _, _ = scanline.polygon_runs(np.asarray([g], dtype=object), grid.x0, grid.y0, grid.res,
                                                       grid.res_y, grid.width, grid.height, all_touched=True)
    got = masks(run_ptr, row, c0, c1, grid)[0]
    assert ref[1, 0] and not got[1, 0]
    ref[1, 0] = False
    np.testing.assert_array_equal(got, ref)


def test_overlapping_parcels_each_keep_their_pixels():
    """SYNTHETIC overlapping parcels and a shared boundary through pixel centres: each
    parcel has the pixels it has alone, so shared pixels are counted for both."""
    grid = Grid(epsg=0, res=10.0, x0=0.0, y0=100.0, width=10, height=10)
    geoms = np.asarray([shapely.box(0, 0, 55, 100), shapely.box(55, 0, 100, 100),
                        shapely.box(20, 20, 80, 80)], dtype=object)
    for all_touched in (False, True):
        idx = build_index(np.arange(3), geoms, grid, all_touched=all_touched)
        alone = [int(reference(g, grid, all_touched).sum()) for g in geoms]
        assert idx.npix.tolist() == alone
    assert alone[0] + alone[1] > 100         # with all_touched the column at x = 55 counts twice


def test_ring_orientation_rule_is_ogrs():
    """_is_clockwise equals OGR's orientation for valid rings (shapely's is_ccw)."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        pts = rng.uniform(0, 100, (rng.integers(3, 15), 2))
        ring = shapely.convex_hull(shapely.MultiPoint(pts)).exterior
        if rng.random() < 0.5:
            ring = shapely.LinearRing(list(ring.coords)[::-1])
        xy = shapely.get_coordinates(ring)
        assert scanline._is_clockwise(xy[:, 0].copy(), xy[:, 1].copy(), 0, len(xy)) == (not ring.is_ccw)


def test_empty_none_and_non_polygonal_geometries():
    grid = Grid(epsg=0, res=10.0, x0=0.0, y0=100.0, width=10, height=10)
    line = shapely.LineString([(5, 5), (95, 95)])
    gc = shapely.GeometryCollection([shapely.box(0, 0, 30, 30), line, shapely.Point(85, 15)])
    geoms = np.asarray([None, shapely.Polygon(), shapely.box(10, 10, 40, 40), line, gc,
                        shapely.MultiPolygon()], dtype=object)
    for all_touched in (False, True):
        idx = build_index(np.arange(geoms.size), geoms, grid, all_touched=all_touched)
        got = masks(idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1, grid)
        assert idx.npix[[0, 1, 5]].tolist() == [0, 0, 0]
        for k in (2, 3, 4):
            np.testing.assert_array_equal(got[k], reference(geoms[k], grid, all_touched), err_msg=str(k))
        assert_runs_well_formed(idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1, idx.npix, grid)


def test_synthetic_parcels_are_exact_on_a_tile_corner():
    """Realistic SYNTHETIC parcels (scripts/synthetic_parcels.py) on a piece of T31UDS."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from synthetic_parcels import make_parcels

    bounds = (499980.0, 5700000.0 - 3000.0, 499980.0 + 3000.0, 5700000.0)
    geoms = make_parcels(150, bounds, seed=5)
    assert shapely.is_valid(geoms).all() and geoms.size == 150
    tree = shapely.STRtree(geoms)
    pairs = tree.query(geoms, predicate="intersects")
    assert (pairs[0] == pairs[1]).all()                           # disjoint
    area = shapely.area(geoms)
    assert area.min() >= 5000 and area.max() <= 50000
    nv = shapely.get_num_coordinates(geoms) - 1
    assert nv.min() >= 25 and np.percentile(nv, 95) <= 35
    grid = Grid(epsg=32631, res=10.0, x0=499980.0, y0=5700000.0, width=300, height=300)
    for all_touched in (False, True):
        idx = build_index(np.arange(geoms.size), geoms, grid, all_touched=all_touched)
        got = masks(idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1, grid)
        for g, m in zip(geoms, got, strict=True):
            np.testing.assert_array_equal(m, reference(g, grid, all_touched))


# ----------------------------------------------------------------------------- Grid
def test_grid_non_square_rotated_and_lattice():
    t = Affine(9.9948, 0, 465181.0522318204, 0, -9.9975, 5080254.63349641)
    g = Grid.from_raster(32633, t, 100, 101)
    assert (g.res, g.res_y, g.square) == (9.9948, 9.9975, False)
    assert g.transform == t
    with pytest.raises(GridError, match="not square"):
        _ = g.lattice
    sq = Grid.from_raster(32631, Affine(10, 0, 499980, 0, -10, 5700000), 10980, 10980)
    assert sq.res_y == 10.0 and sq.square and sq.lattice == (32631, 10.0, 0.0, 0.0)
    assert Grid(epsg=32631, res=10.0, x0=0.0, y0=0.0, width=1, height=1) == Grid(
        epsg=32631, res=10.0, res_y=10.0, x0=0.0, y0=0.0, width=1, height=1)
    with pytest.raises(GridError):
        g.offset_in(Grid(epsg=32633, res=9.9948, x0=g.x0, y0=g.y0, width=5, height=5))
    for bad in (Affine(10, 0.5, 0, 0, -10, 0), Affine(10, 0, 0, 0.1, -10, 0), Affine(10, 0, 0, 0, 10, 0)):
        with pytest.raises(GridError, match="not north-up"):
            Grid.from_raster(32631, bad, 5, 5)


def test_gdal_is_the_bundled_one():
    """The reference GDAL is rasterio's (recorded in docs/rasterization.md)."""
    major, minor = (int(v) for v in rasterio.__gdal_version__.split(".")[:2])
    assert (major, minor) >= (3, 8), rasterio.__gdal_version__
    assert grid_index.scanline is scanline
