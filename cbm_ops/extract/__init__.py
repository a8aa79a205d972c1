"""Extraction: claimed scenes of the queue into sigs and hists.

* :mod:`.worker`: :func:`run_queue`, the worker loop (claims, outcomes, database outages);
* :mod:`.stage`: :func:`process_claim`, one scene stage from its bands to its rows;
* :mod:`.bands`: the window of a band the parcels need, on its parcel index;
* :mod:`.scenes`: the band files of S2 L2A, CARD-BS and CARD-COH6 products, BOA offsets;
* :mod:`.store`: where scene files come from (a mount or S3);
* :mod:`.quality`: the quality gate before commit;
* :mod:`.writer`: one scene stage = one transaction (delete + binary COPY + completion);
* :mod:`.lineage`: which code, parameters and product produced a stage's rows;
* :mod:`.threads`: Numba and GDAL threads per task slot.

``from cbm_ops.extract import zonal_stats`` (notebooks) is :func:`cbm_ops.grid.zonal_stats`.
"""

from ..grid.zonal import zonal_stats
from .stage import process_claim
from .worker import run_queue

__all__ = ["process_claim", "run_queue", "zonal_stats"]
