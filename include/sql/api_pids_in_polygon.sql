-- Parcels that intersect a polygon given as WKB in the parcel CRS, by pid, at most %(limit)s
-- (the caller transforms it from EPSG:4326, see api_pids_at_point.sql).
SELECT p.ogc_fid
FROM {schema}.{parcels} p
WHERE ST_Intersects(p.wkb_geometry, ST_GeomFromWKB(%(wkb)s, %(srid)s))
ORDER BY p.ogc_fid
LIMIT %(limit)s
