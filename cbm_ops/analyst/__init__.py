"""The analyst side: parcel queries and time series, plots, exports and run reports.

* :mod:`.queries`: parcels by id, location or polygon, peers, one scene (JRC API shapes:
  equal-length column lists);
* :mod:`.timeseries`: canonical observations and the parcel time series;
* :mod:`.plot`: PNG plots of NDVI and S1 backscatter;
* :mod:`.export`: canonical signatures of a year (Parquet/CSV) and parcels (GeoParquet);
* :mod:`.report`: run summaries and the AOI report;
* the JRC RESTful API's other routes: :mod:`.chips` and :mod:`.chipcut` (image chips from the
  scene store), :mod:`.background` (background images from a configured tile server),
  :mod:`.meteo` (weather time series and their import), :mod:`.info` (``/query/info``).

The parcel API (``plugins/cbm_api``) and notebooks call these::

    from cbm_ops import analyst
    with transaction(url) as conn:
        ts = analyst.parcel_time_series(conn, cfg, pid=20, tstype="s2", year=2018)
"""

from ..errors import BadRequest, NotFound
from .plot import MAX_PLOT_PARCELS, parcel_plot, plot_parcels
from .queries import (
    JRC_KEYS,
    JRC_MIN_PEER_AREA_M2,
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
    ring_wkt,
    stage_lineage,
    to_csv,
)
from .timeseries import CARD_BANDS, TSTYPES, check_bands, parcel_observations, parcel_time_series, time_series_latency

__all__ = ["CARD_BANDS", "JRC_KEYS", "JRC_MIN_PEER_AREA_M2", "MAX_PEERS", "MAX_PEER_DISTANCE_M", "MAX_PLOT_PARCELS",
           "MAX_POLYGON_KM2", "MAX_POLYGON_PARCELS", "STATEMENT_TIMEOUT", "TSTYPES", "YEAR_RANGE", "BadRequest",
           "NotFound",
           "check_bands", "observation", "parcel_bbox", "parcel_by_id", "parcel_by_location", "parcel_observations",
           "parcel_peers", "parcel_plot", "parcel_time_series", "parcels_by_polygon", "parcels_info", "parse_polygon",
           "plot_parcels", "read_only", "ring_wkt", "stage_lineage", "time_series_latency", "to_csv"]
