"""Band reading: the image blocks of one band that the AOI's parcels need, on its parcel index.

The parcel index of the band's grid (stored lattice, or rasterized for the scene; see
:func:`cbm_ops.grid.stored.index_for_grid`) says which pixels belong to which parcel. Of
the band only the blocks that hold parcel pixels are decoded (:func:`plan_blocks`): the
1024 x 1024 tiles of a Sentinel-2 JPEG2000 band, the blocks of a COG or tiled GeoTIFF,
the scanlines of a raw (ENVI) or striped file. A granule's sea, forest and towns cost
nothing. The needed blocks are grouped into rectangles that decode nothing else
(horizontal runs of needed blocks, stacked where consecutive block rows have the same
runs); GeoTIFF/COG and raw files are read one rectangle per call (GDAL decodes the blocks
of one request in parallel), JPEG2000 one tile per call (OpenJPEG's intra-tile threads
keep every core busy; :func:`read_blocks`). The decoded blocks land in one array of the
parcels' bounding window, which the kernels read unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import AoiConfig
from ..errors import GridError, SceneError
from ..grid import kernels
from ..grid.index import Grid, ParcelIndex
from ..grid.stored import index_for_grid
from .scenes import BandFile
from .store import RasterSource


def _epsg(ds) -> int:
    if ds.crs is None:
        raise SceneError("Grid error", f"{ds.name}: no CRS", retryable=False)
    epsg = ds.crs.to_epsg() or ds.crs.to_epsg(confidence_threshold=30)
    if not epsg:
        raise SceneError("Grid error", f"{ds.name}: CRS has no EPSG code: {ds.crs.to_wkt()[:200]}",
                         retryable=False)
    return int(epsg)


def window_of(ds_grid: Grid, idx: ParcelIndex) -> tuple[Any, int, int] | None:
    """Image window covering the indexed parcels, and its (row, col) in the index grid."""
    from rasterio.windows import Window

    r_off, c_off = ds_grid.offset_in(idx.grid)
    pr0, pr1, pc0, pc1 = idx.row_range()
    row0, row1 = max(pr0 - r_off, 0), min(pr1 - r_off, ds_grid.height)
    col0, col1 = max(pc0 - c_off, 0), min(pc1 - c_off, ds_grid.width)
    if row1 <= row0 or col1 <= col0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0), r_off + row0, c_off + col0


@dataclass(frozen=True)
class BlockPlan:
    """What to decode of one image for one parcel index.

    Attributes
    ----------
    window : (row0, col0, height, width)
        Image pixels bounding every needed pixel (the array the band is decoded into).
    rects : list of (row0, col0, height, width)
        Rectangles to read, image pixels, disjoint, inside ``window``; each is a union of
        whole blocks clipped to ``window``.
    blocks, total_blocks : int
        Blocks holding parcel pixels, and all blocks of the image.
    block_shape : (int, int)
        Block height and width (pixels).
    """

    window: tuple[int, int, int, int]
    rects: list[tuple[int, int, int, int]]
    blocks: int
    total_blocks: int
    block_shape: tuple[int, int]

    @property
    def pixels(self) -> int:
        """Pixels the rectangles hold (what is decoded, less the tile parts outside the window)."""
        return sum(h * w for _, _, h, w in self.rects)


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of the runs of True in a 1-D bool array."""
    d = np.diff(np.concatenate(([0], row.view(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def block_rects(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Block rectangles covering exactly the True blocks of ``mask`` (greedy, few).

    Horizontal runs of needed blocks per block row; a run continues the rectangle above
    when that one has the same columns and ends on the previous block row.

    Parameters
    ----------
    mask : bool ndarray, shape (NTY, NTX)
        Needed blocks (:func:`cbm_ops.grid.kernels.block_mask`).

    Returns
    -------
    list of (ty0, tx0, ty1, tx1)
        Block rows and columns, end exclusive, in row-major order of their first block.
    """
    rects: list[list[int]] = []
    if mask.size == 0:
        return []
    change = np.flatnonzero(np.any(mask[1:] != mask[:-1], axis=1)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [mask.shape[0]]))
    open_: dict[tuple[int, int], int] = {}
    for y0, y1 in zip(starts.tolist(), ends.tolist(), strict=True):
        now: dict[tuple[int, int], int] = {}
        for run in _runs(mask[y0]):
            k = open_.get(run)
            if k is None:
                rects.append([y0, run[0], y1, run[1]])
                k = len(rects) - 1
            else:
                rects[k][2] = y1
            now[run] = k
        open_ = now
    return [(a, b, c, d) for a, b, c, d in rects]


def plan_blocks(image: Grid, idx: ParcelIndex, block_shape: tuple[int, int]) -> BlockPlan | None:
    """The blocks of an image that hold pixels of the index's parcels, as rectangles to read.

    Parameters
    ----------
    image : Grid
        The image's grid, on the index's lattice.
    idx : ParcelIndex
    block_shape : (int, int)
        Block height and width of the image (rasterio ``block_shapes[band - 1]``).

    Returns
    -------
    BlockPlan or None
        None when no parcel pixel lies in the image.

    Raises
    ------
    GridError
        If the image is not on the index's lattice.
    """
    r_off, c_off = image.offset_in(idx.grid)
    H, W = image.height, image.width
    bh, bw = max(1, min(int(block_shape[0]), H)), max(1, min(int(block_shape[1]), W))
    mask = kernels.block_mask(idx.run_row, idx.run_c0, idx.run_c1, r_off, c_off, H, W, bh, bw)
    win = window_of(image, idx)
    if win is None or not mask.any():
        return None
    wr0, wc0 = int(win[0].row_off), int(win[0].col_off)
    wr1, wc1 = wr0 + int(win[0].height), wc0 + int(win[0].width)
    rects = []
    for ty0, tx0, ty1, tx1 in block_rects(mask):
        r0, r1 = max(ty0 * bh, wr0), min(ty1 * bh, wr1)
        c0, c1 = max(tx0 * bw, wc0), min(tx1 * bw, wc1)
        if r1 > r0 and c1 > c0:
            rects.append((r0, c0, r1 - r0, c1 - c0))
    return BlockPlan(window=(wr0, wc0, wr1 - wr0, wc1 - wc0), rects=rects, blocks=int(mask.sum()),
                     total_blocks=int(mask.size), block_shape=(bh, bw))


def _tiles_of(rect: tuple[int, int, int, int], block_shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The rectangle cut at block edges: one (row0, col0, height, width) per block."""
    def cuts(a: int, n: int, size: int) -> list[tuple[int, int]]:
        out, x = [], a
        while x < a + n:
            x1 = min((x // size + 1) * size, a + n)
            out.append((x, x1))
            x = x1
        return out

    r0, c0, h, w = rect
    return [(ra, ca, rb - ra, cb - ca) for ra, rb in cuts(r0, h, block_shape[0])
            for ca, cb in cuts(c0, w, block_shape[1])]


def read_blocks(ds, band: int, plan: BlockPlan) -> np.ndarray:
    """Decode the planned rectangles of one band into an array of the plan's window.

    JPEG2000 is read one tile per call: GDAL's JP2OpenJPEG gives a single-tile read all
    ``GDAL_NUM_THREADS`` as OpenJPEG intra-tile threads, while a multi-tile read decodes one
    tile per thread, which leaves cores idle on the last round of an uneven tile count
    (measured: 1.6 against 1.9 of 2 cores busy). Other formats are read one rectangle per
    call (GeoTIFF/COG decode the blocks of one request in parallel, a single block on one
    thread).

    Parameters
    ----------
    ds : rasterio dataset
    band : int
        1-based band index.
    plan : BlockPlan

    Returns
    -------
    ndarray, shape (window height, window width), the band's dtype
        Pixels outside the rectangles are left unset (no parcel pixel lies there: the
        kernels never read them).
    """
    from rasterio.windows import Window

    wr0, wc0, wh, ww = plan.window
    per_tile = ds.driver == "JP2OpenJPEG"
    if not per_tile and len(plan.rects) == 1 and plan.rects[0] == plan.window:
        return ds.read(band, window=Window(wc0, wr0, ww, wh))
    arr = np.empty((wh, ww), ds.dtypes[band - 1])
    for rect in plan.rects:
        for r0, c0, h, w in _tiles_of(rect, plan.block_shape) if per_tile else [rect]:
            ds.read(band, window=Window(c0, r0, w, h), out=arr[r0 - wr0:r0 - wr0 + h, c0 - wc0:c0 - wc0 + w])
    return arr


@dataclass
class BandRead:
    """One decoded band window and what it is aligned to.

    Attributes
    ----------
    arr : ndarray, shape (H, W), native dtype, or None
        The window the indexed parcels need (None: no parcel lies in the image); only the
        pixels of ``rects`` are decoded.
    r0, c0 : int
        Grid row/column of ``arr[0, 0]`` in the index grid.
    idx : ParcelIndex
    nodata : float or None
    bounds : (minx, miny, maxx, maxy)
        The image's extent, metres of its CRS.
    epsg : int
    rects : list of (row0, col0, height, width)
        The decoded rectangles of ``arr`` (array coordinates).
    blocks, total_blocks : int
        Image blocks decoded, and all blocks of the image.
    """

    arr: np.ndarray | None
    r0: int
    c0: int
    idx: ParcelIndex
    nodata: float | None
    bounds: tuple[float, float, float, float]
    epsg: int
    rects: list[tuple[int, int, int, int]] = field(default_factory=list)
    blocks: int = 0
    total_blocks: int = 0

    def decoded(self) -> list[np.ndarray]:
        """Views of ``arr`` on the decoded rectangles."""
        if self.arr is None:
            return []
        return [self.arr[r:r + h, c:c + w] for r, c, h, w in self.rects]

    def nan_fraction(self) -> float:
        """NaN share of the decoded pixels (0 for integer bands)."""
        if self.arr is None or self.arr.dtype.kind != "f":
            return 0.0
        n = sum(v.size for v in self.decoded())
        return sum(kernels.nan_count(v) for v in self.decoded()) / n if n else 0.0

    def max_value(self) -> int:
        """Largest decoded value of an integer band (0 without pixels)."""
        return max((int(v.max()) for v in self.decoded() if v.size), default=0)


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


def read_band(path: str | RasterSource, bf: BandFile, url: str, cfg: AoiConfig, footprint: bytes | None = None,
              obsid: int | None = None) -> BandRead:
    """Decode the blocks of one band that the AOI's parcels need (:func:`plan_blocks`).

    Parameters
    ----------
    path : str or RasterSource
        Local band file, or what the store says to open (a ``/vsis3/`` or ``/vsicurl/`` path
        read with range requests, and its GDAL settings).
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

    src = path if isinstance(path, RasterSource) else RasterSource(path)
    try:
        with src.env(), rasterio.open(src.path) as ds:
            if src.local:
                check_raw_size(ds, src.path)
            epsg = _epsg(ds)
            grid = Grid.from_raster(epsg, ds.transform, ds.width, ds.height)
            idx = index_for_grid(url, cfg, grid, footprint, obsid)
            plan = plan_blocks(grid, idx, ds.block_shapes[bf.index - 1])
            nodata = ds.nodatavals[bf.index - 1]
            if nodata is None:
                nodata = bf.nodata
            bounds = tuple(ds.bounds)
            if plan is None:
                return BandRead(None, 0, 0, idx, nodata, bounds, epsg)
            arr = read_blocks(ds, bf.index, plan)
            r_off, c_off = grid.offset_in(idx.grid)
            wr0, wc0 = plan.window[:2]
            rects = [(r - wr0, c - wc0, h, w) for r, c, h, w in plan.rects]
            return BandRead(arr, r_off + wr0, c_off + wc0, idx, nodata, bounds, epsg, rects, plan.blocks,
                            plan.total_blocks)
    except GridError as exc:
        raise SceneError("Grid error", f"{bf.band}: {exc}", retryable=False) from None
    except RasterioError as exc:
        raise SceneError("Read error", f"{bf.band}: {exc}", retryable=True) from None


def footprint_in(footprint: bytes | None, epsg: int):
    """The catalogue footprint (EPSG:4326 WKB) in a UTM EPSG (shapely), or None."""
    if not footprint:
        return None
    import shapely
    from pyproj import Transformer

    tr = Transformer.from_crs(4326, epsg, always_xy=True)
    geom = shapely.segmentize(shapely.from_wkb(footprint), 0.05)      # degrees, follow the projection
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
