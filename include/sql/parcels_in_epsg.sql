-- The AOI's parcels (non-empty) as WKB in a UTM EPSG, ordered by parcel id.
SELECT ogc_fid, ST_AsBinary(ST_Transform(wkb_geometry, %(epsg)s::int))
FROM {schema}.{parcels}
WHERE wkb_geometry IS NOT NULL AND NOT ST_IsEmpty(wkb_geometry)
ORDER BY ogc_fid
