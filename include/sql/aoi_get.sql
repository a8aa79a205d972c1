-- The AOI outline (EPSG:4326) and its parcel table.
SELECT ST_AsBinary(wkb_geometry), parcel_table, parcel_srid, parcels_version
FROM {schema}.aois
WHERE name = %(name)s
