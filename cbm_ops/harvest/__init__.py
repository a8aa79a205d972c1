"""Harvest: the catalogue of Sentinel scenes over an AOI, its completeness, S1 CARD orders.

* :mod:`.records`: record types, the field-by-field checks (:func:`normalise`) and the
  :class:`HarvestReport`;
* :mod:`.parsers`: resto GeoJSON, Atom, STAC and OData documents taken apart into raw records;
* :mod:`.sources`: where records come from (resto, saved responses), paged and split, and
  :func:`make_source`; :mod:`.odata` (CDSE OData) and :mod:`.stac` (STAC APIs through
  pystac-client) are the live sources;
* :mod:`.assets`: STAC band assets per catalogue, the offsets that make COG and JP2
  statistics equal, href signing;
* :mod:`.catalogue`: the harvest into ``dias_catalogue`` (upsert, ``harvest_log``, queueing
  of new scenes) and the widening of scheduled windows over outages;
* :mod:`.completeness`: expected acquisitions (revisit pattern) vs harvested vs extracted;
* :mod:`.ordering`: Sentinel-1 CARD products ordered through the CDSE On-Demand Processing API.
"""

from ..errors import HarvestError, NotCardError, RecordError
from .catalogue import harvest, harvest_history, make_source, upsert, widened_window
from .records import HarvestReport, RawRecord, SceneRecord, normalise, normalise_checked
from .sources import OfflineSource, RestoSource

__all__ = ["HarvestError", "HarvestReport", "NotCardError", "OfflineSource", "RawRecord", "RecordError",
           "RestoSource", "SceneRecord", "harvest", "harvest_history", "make_source", "normalise",
           "normalise_checked", "upsert", "widened_window"]
