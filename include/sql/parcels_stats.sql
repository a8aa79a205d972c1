-- Parcel count, SRID and version (md5 over ids and geometries) of the staging table.
SELECT count(*)::int,
       max(ST_SRID(wkb_geometry)),
       md5(coalesce(string_agg(ogc_fid::text || ':' || md5(coalesce(ST_AsBinary(wkb_geometry), '')),
                               ',' ORDER BY ogc_fid), ''))
FROM {schema}.{staging}
