"""Grids: parcels rasterized on image grids, the statistics kernels, ``zonal_stats``.

* :mod:`.scanline`: the Numba port of GDAL's scanline rasterizer (pixel-centre and
  all-touched rules), parcels to runs;
* :mod:`.index`: :class:`Grid`, :class:`ParcelIndex` (run-length parcel index),
  :func:`build_index`, :func:`lattice_grid` (pure, no database);
* :mod:`.stored`: indexes per UTM lattice stored in PostGIS (``parcel_grids``),
  :func:`rasterize_aoi`, :func:`index_for_grid`;
* :mod:`.kernels`: the 8 statistics and SCL histograms of all parcels of a band in one
  parallel Numba pass;
* :mod:`.zonal`: :func:`zonal_stats`, the same statistics for any raster (notebooks).
"""

from ..errors import GridError
from .index import Grid, ParcelIndex, build_index, lattice_grid
from .zonal import zonal_stats

__all__ = ["Grid", "GridError", "ParcelIndex", "build_index", "lattice_grid", "zonal_stats"]
