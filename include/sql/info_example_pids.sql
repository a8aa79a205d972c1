-- The first parcel ids of an AOI (examples for /query/info, the JRC's id_examples_<year>).
SELECT p.ogc_fid FROM {schema}.{parcels} p ORDER BY p.ogc_fid LIMIT %(limit)s
