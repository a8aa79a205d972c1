-- Parcels without usable geometry (missing, or empty after repair).
SELECT ogc_fid FROM {schema}.{staging}
WHERE wkb_geometry IS NULL OR ST_IsEmpty(wkb_geometry)
ORDER BY ogc_fid
