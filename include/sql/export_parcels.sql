-- The parcels with their attributes (JSON, without the geometry), the geometry as WKB in the
-- parcel CRS and its SRID, by pid.
SELECT p.ogc_fid, to_jsonb(p) - 'wkb_geometry', ST_AsBinary(p.wkb_geometry), ST_SRID(p.wkb_geometry)
FROM {schema}.{parcels} p
ORDER BY p.ogc_fid
