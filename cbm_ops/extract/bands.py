"""Band reading: the window of one band that the AOI's parcels need, on its parcel index.

For every band the scene's image window that the parcels need is decoded once; the
parcel index of its grid (stored lattice, or rasterized for the scene) says which pixels
belong to which parcel (:func:`cbm_ops.grid.stored.index_for_grid`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import AoiConfig
from ..errors import GridError, SceneError
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


def read_band(path: str | RasterSource, bf: BandFile, url: str, cfg: AoiConfig, footprint: bytes | None = None,
              obsid: int | None = None) -> BandRead:
    """Decode the window of one band that the AOI's parcels need.

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
            win = window_of(grid, idx)
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


def footprint_in(footprint: bytes | None, epsg: int):
    """The catalogue footprint (EPSG:4326 WKB) in a UTM EPSG (shapely), or None."""
    if not footprint:
        return None
    import shapely
    from pyproj import Transformer

    tr = Transformer.from_crs(4326, epsg, always_xy=True)
    geom = shapely.segmentize(shapely.from_wkb(footprint), 0.05)      # degrees, follow the projection
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
