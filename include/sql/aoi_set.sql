-- Create or update the AOI row with a given outline (EPSG:4326 WKT). Parcel fields are
-- only overwritten when given (NULL keeps the stored value).
INSERT INTO {schema}.aois (name, wkb_geometry, parcel_table, parcel_srid, parcels_version, updated_at)
VALUES (%(name)s, ST_Multi(ST_GeomFromText(%(wkt)s, 4326)), %(table)s, %(srid)s, %(version)s, now())
ON CONFLICT (name) DO UPDATE
SET wkb_geometry = EXCLUDED.wkb_geometry,
    parcel_table = coalesce(EXCLUDED.parcel_table, {schema}.aois.parcel_table),
    parcel_srid = coalesce(EXCLUDED.parcel_srid, {schema}.aois.parcel_srid),
    parcels_version = coalesce(EXCLUDED.parcels_version, {schema}.aois.parcels_version),
    updated_at = now()
