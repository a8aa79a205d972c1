"""``zonal_stats``: the pipeline's statistics for any raster and shapely geometries (notebooks)."""

from __future__ import annotations

import gc
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import shapely

from . import kernels
from .index import Grid, build_index


def zonal_stats(raster_path: str, geometries: Any, *, band: int = 1, nodata: float | None = None,
                all_touched: bool = False) -> list[dict[str, float | None]]:
    """Per-geometry statistics of one raster band, with the pipeline's definitions.

    Parameters
    ----------
    raster_path : str
        Any raster GDAL reads (GeoTIFF, JP2, ENVI ...), north-up; square or non-square
        pixels.
    geometries : sequence of shapely geometries, length G
        Polygons in the raster's CRS.
    band : int
        1-based band index.
    nodata : float, optional
        Value masked per pixel; default the band's declared nodata. NaN is always masked.
    all_touched : bool
        GDAL's all-touched rule instead of the pixel-centre rule.

    Returns
    -------
    list of dict, length G
        ``count``, ``mean``, ``std`` (ddof 0), ``min``, ``max``, ``p25``, ``p50``, ``p75``
        (numpy 'linear' percentiles) in the band's units; ``count`` 0 and the others
        ``None`` for a geometry without valid pixels. Same definitions as rasterstats
        ``zonal_stats(..., stats="count mean std min max percentile_25 percentile_50
        percentile_75")``.

    Raises
    ------
    rasterio.errors.RasterioIOError
        If the raster cannot be opened.
    GridError
        If the raster is rotated, sheared or not north-up.
    """
    import rasterio
    from rasterio.windows import Window

    geoms = np.asarray(list(geometries), dtype=object)
    if geoms.size == 0:
        return []
    threads = os.environ.get("GDAL_NUM_THREADS", "ALL_CPUS")
    with rasterio.Env(GDAL_NUM_THREADS=threads), rasterio.open(raster_path) as ds:
        full = Grid.from_raster(0, ds.transform, ds.width, ds.height)
        minx, miny, maxx, maxy = shapely.total_bounds(geoms)
        c0 = max(int(np.floor((minx - full.x0) / full.res)) - 1, 0)
        r0 = max(int(np.floor((full.y0 - maxy) / full.res_y)) - 1, 0)
        c1 = min(int(np.ceil((maxx - full.x0) / full.res)) + 1, full.width)
        r1 = min(int(np.ceil((full.y0 - miny) / full.res_y)) + 1, full.height)
        if c1 <= c0 or r1 <= r0:
            return [dict.fromkeys(kernels.STAT_NAMES) | {"count": 0} for _ in geoms]
        if nodata is None:
            nodata = ds.nodatavals[band - 1]
        # the index is built on the raster's own grid (GDAL's pixel coordinates, exact
        # ties) while the window the geometries need is decoded (both release the GIL)
        with ThreadPoolExecutor(1) as ex:
            fut = ex.submit(build_index, np.arange(geoms.size), geoms, full, all_touched=all_touched)
            arr = ds.read(band, window=Window(c0, r0, c1 - c0, r1 - r0))
            idx = fut.result()
    st = kernels.parcel_stats(arr, r0, c0, idx.run_ptr, idx.run_row, idx.run_c0, idx.run_c1,
                              idx.max_pixels, nodata)
    names = ("mean", "std", "min", "max", "p25", "p50", "p75")
    counts = st[:, 0].astype(np.int64).tolist()
    rows = st[:, 1:].tolist()
    none = dict.fromkeys(names)
    out: list[dict[str, float | None]] = []
    gc_was_on = gc.isenabled()
    gc.disable()                    # 200k small dicts: the cyclic GC would only slow this down
    try:
        for n, row in zip(counts, rows, strict=True):
            rec: dict[str, float | None] = {"count": n}
            rec.update(zip(names, row, strict=True) if n else none)
            out.append(rec)
    finally:
        if gc_was_on:
            gc.enable()
    return out
