-- Parcel ids of a weather import that are not parcels of the AOI (the import is refused).
SELECT DISTINCT s.pid FROM meteo_stage s
WHERE s.pid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {schema}.{parcels} p WHERE p.ogc_fid = s.pid)
ORDER BY s.pid
LIMIT 10
