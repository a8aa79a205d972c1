"""The analyst side: parcel queries and time series, plots, exports and run reports.

* :mod:`.queries`: parcels by id, location or polygon, peers, one scene (JRC API shapes:
  equal-length column lists);
* :mod:`.timeseries`: canonical observations and the parcel time series;
* :mod:`.plot`: PNG plots of NDVI and S1 backscatter;
* :mod:`.export`: canonical signatures of a year (Parquet/CSV) and parcels (GeoParquet);
* :mod:`.report`: run summaries and the AOI report.

The parcel API (``plugins/cbm_api``) and notebooks call these::

    from cbm_ops import analyst
    with transaction(url) as conn:
        ts = analyst.parcel_time_series(conn, cfg, pid=20, tstype="s2", year=2018)
"""

from ..errors import BadRequest, NotFound
from .plot import MAX_PLOT_PARCELS, parcel_plot, plot_parcels
from .queries import (
    MAX_PEER_DISTANCE_M,
    MAX_PEERS,
    MAX_POLYGON_KM2,
    MAX_POLYGON_PARCELS,
    STATEMENT_TIMEOUT,
    YEAR_RANGE,
    observation,
    parcel_bbox,
    parcel_by_id,
    parcel_by_location,
    parcel_peers,
    parcels_by_polygon,
    parcels_info,
    parse_polygon,
    read_only,
    stage_lineage,
    to_csv,
)
from .timeseries import CARD_BANDS, TSTYPES, check_bands, parcel_observations, parcel_time_series, time_series_latency

__all__ = ["CARD_BANDS", "MAX_PEERS", "MAX_PEER_DISTANCE_M", "MAX_PLOT_PARCELS", "MAX_POLYGON_KM2",
           "MAX_POLYGON_PARCELS", "STATEMENT_TIMEOUT", "TSTYPES", "YEAR_RANGE", "BadRequest", "NotFound",
           "check_bands", "observation", "parcel_bbox", "parcel_by_id", "parcel_by_location", "parcel_observations",
           "parcel_peers", "parcel_plot", "parcel_time_series", "parcels_by_polygon", "parcels_info", "parse_polygon",
           "plot_parcels", "read_only", "stage_lineage", "time_series_latency", "to_csv"]
