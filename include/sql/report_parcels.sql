-- Parcels of the AOI with their attributes (without the geometry) as JSON.
SELECT p.ogc_fid, to_jsonb(p) - 'wkb_geometry'
FROM {schema}.{parcels} p
ORDER BY p.ogc_fid
