-- The AOI's parcel-set version, row-locked FOR SHARE for a scene stage's write transaction:
-- a parcel import (which locks the row FOR UPDATE before it clears results) waits for the
-- writes in flight, and a write after the import sees the new version.
SELECT parcels_version FROM {schema}.aois WHERE name = %(name)s FOR SHARE
