-- A parcel import locks the AOI row first: scene stages being written finish before it
-- clears results, and later writes see the new parcel-set version (aoi_version_share.sql).
SELECT name FROM {schema}.aois WHERE name = %(name)s FOR UPDATE
