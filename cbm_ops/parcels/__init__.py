"""Parcels: the LPIS/GSAA parcel file into PostGIS, checked and repaired, and the AOI row.

:func:`import_parcels` (``cbm import-parcels``, the DAG's setup) loads a parcel file with
``gdal.VectorTranslate`` into a staging table, repairs and checks it, and swaps it in;
the parcel set's version keys the rasterized parcel indexes (:mod:`cbm_ops.grid.stored`).
"""

from ..errors import ParcelImportError
from .importer import ImportReport, import_parcels

__all__ = ["ImportReport", "ParcelImportError", "import_parcels"]
