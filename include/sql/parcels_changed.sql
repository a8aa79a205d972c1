-- Parcels that differ between the current parcel table and the staging table: removed,
-- new, or with another geometry (binary comparison).
SELECT coalesce(o.ogc_fid, n.ogc_fid) AS ogc_fid,
       CASE WHEN n.ogc_fid IS NULL THEN 'removed' WHEN o.ogc_fid IS NULL THEN 'new' ELSE 'changed' END
FROM {schema}.{parcels} o
FULL JOIN {schema}.{staging} n ON n.ogc_fid = o.ogc_fid
WHERE o.ogc_fid IS NULL OR n.ogc_fid IS NULL
   OR ST_AsBinary(o.wkb_geometry) IS DISTINCT FROM ST_AsBinary(n.wkb_geometry)
ORDER BY 1
