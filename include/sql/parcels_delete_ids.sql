-- Exclude parcels from the staging table (reported by the import).
DELETE FROM {schema}.{staging} WHERE ogc_fid = ANY (%(ids)s::int[])
