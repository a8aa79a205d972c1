-- Create or update the AOI row from the parcel extent, widened by 1 percent (the outermost
-- parcels touch the extent; reprojection must not cut slivers off them) and densified
-- before the transform to EPSG:4326 so its edges follow the reprojection.
INSERT INTO {schema}.aois (name, wkb_geometry, parcel_table, parcel_srid, parcels_version, updated_at)
SELECT %(name)s,
       ST_Multi(ST_Transform(
           ST_Segmentize(ST_SetSRID(e::geometry, %(srid)s),
                         greatest(ST_XMax(e) - ST_XMin(e), ST_YMax(e) - ST_YMin(e)) / 32.0 + 1e-9),
           4326)),
       %(table)s, %(srid)s, %(version)s, now()
FROM (SELECT ST_Expand(x, greatest(ST_XMax(x) - ST_XMin(x), ST_YMax(x) - ST_YMin(x)) * 0.01) AS e
      FROM (SELECT ST_Extent(wkb_geometry) AS x FROM {schema}.{parcels}) raw) ext
ON CONFLICT (name) DO UPDATE
SET wkb_geometry = EXCLUDED.wkb_geometry, parcel_table = EXCLUDED.parcel_table,
    parcel_srid = EXCLUDED.parcel_srid, parcels_version = EXCLUDED.parcels_version,
    updated_at = now()
