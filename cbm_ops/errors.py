"""Every exception of the library, in one leaf module (it imports nothing of cbm_ops).

Each stage raises the classes below and re-exports the ones its callers catch, so
``from cbm_ops.analyst import BadRequest`` and ``from cbm_ops.errors import BadRequest``
name the same class. Grouped by the stage that raises them:

* configuration and database: :class:`ConfigError`, :class:`LegacySchemaError`,
  :class:`RunWindowError`;
* harvest: :class:`HarvestError`, :class:`RecordError`, :class:`NotCardError`,
  :class:`ProductNameError`, :class:`IncompleteError`, :class:`OrderError`,
  :class:`OrderRefused`, :class:`OrderAuthError`;
* parcels and grids: :class:`ParcelImportError`, :class:`GridError`;
* extraction: :class:`SceneError` (a named scene status), :class:`StorePathError`,
  :class:`LeaseLost`, :class:`ParcelsChanged`, :class:`DatabaseUnavailable`;
* analyst side: :class:`BadRequest` (HTTP 400), :class:`NotFound` (HTTP 404),
  :class:`Forbidden` (HTTP 403), :class:`UpstreamError` (HTTP 502), :class:`MeteoImportError`.
"""

from __future__ import annotations

from typing import Any


# ----------------------------------------------------------------- configuration, database
class ConfigError(ValueError):
    """Configuration is missing or invalid (the message says what and where)."""


class LegacySchemaError(ConfigError):
    """sigs/hists are plain tables of an earlier version: run ``cbm migrate-partitions``."""


class RunWindowError(ValueError):
    """A run's window cannot be used (a date Param that is not a date, end before start)."""


# ----------------------------------------------------------------- harvest
class HarvestError(RuntimeError):
    """The catalogue could not be read completely (the message says which window)."""


class RecordError(ValueError):
    """One catalogue record cannot be normalised (reported and skipped).

    Attributes
    ----------
    field : str
        The offending field (``startDate``, ``footprint``, ``cloudCover``, ``title`` ...).
    value : object
        Its value as read.
    """

    def __init__(self, reason: str, field: str = "record", value: Any = None):
        super().__init__(reason)
        self.field, self.value, self.reason = field, value, reason


class NotCardError(RecordError):
    """The record is a valid product but not S2 L2A, CARD-BS or CARD-COH6."""


class ProductNameError(ValueError):
    """A product name does not follow the Sentinel naming convention."""


class IncompleteError(RuntimeError):
    """More of the expected acquisitions are missing than ``completeness.fail_above_pct``."""


class OrderError(RuntimeError):
    """The order API could not be used (unreachable, 5xx, unexpected answer)."""


class OrderRefused(OrderError):
    """The order API refused a request (HTTP 4xx); ``status`` and ``detail`` say why."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class OrderAuthError(OrderRefused):
    """The login to the token endpoint was refused (wrong credentials)."""


# ----------------------------------------------------------------- parcels, grids
class ParcelImportError(RuntimeError):
    """The parcel file cannot be imported (message says why)."""


class GridError(ValueError):
    """An image grid cannot be used with a parcel index (rotated, other CRS, off-lattice)."""


# ----------------------------------------------------------------- extraction
class SceneError(Exception):
    """A scene cannot be processed; ``status`` is the named scene status (<= 24 chars).

    ``retryable`` scenes go back to the queue at the next cleanup while they have
    attempts left (a product still being written, a network failure); permanent ones
    keep their status.
    """

    def __init__(self, status: str, message: str, *, retryable: bool):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class StorePathError(ValueError):
    """A product path that would leave the store root (``..``, absolute parts)."""


class LeaseLost(RuntimeError):
    """The scene's lease is owned by someone else now; the caller must roll back."""


class ParcelsChanged(RuntimeError):
    """The AOI's parcel set changed between a scene's index and its write (nothing written)."""


class DatabaseUnavailable(RuntimeError):
    """The database stayed unreachable longer than the AOI's ``db_retry_minutes``."""


class StoreUnavailable(RuntimeError):
    """The scene store as a whole stayed unavailable longer than the AOI's ``db_retry_minutes``."""


# ----------------------------------------------------------------- analyst side
class BadRequest(ValueError):
    """Invalid query input (the message says which parameter and why)."""


class NotFound(LookupError):
    """The parcel, scene or AOI does not exist."""


class Forbidden(PermissionError):
    """The logged-in user may not read this AOI (HTTP 403; the JRC's "Not authorized for this dataset")."""


class UpstreamError(RuntimeError):
    """A configured outside source (a background tile or WMS server) failed (HTTP 502)."""


class MeteoImportError(ValueError):
    """A weather CSV cannot be imported (the message names the line and the problem); nothing is written."""
