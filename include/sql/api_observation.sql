-- One scene of the catalogue with its footprint as GeoJSON (EPSG:4326).
SELECT d.id, d.obstime, d.reference, d.sensor, d.card, d.status, d.tile, d.epsg, d.relative_orbit,
       d.orbit_direction, d.processing_baseline, d.cloud_cover, d.product_identifier, d.catalogue_id,
       d.source, d.harvested_at, d.boa_add_offset, ST_AsGeoJSON(d.footprint, 7)
FROM {schema}.dias_catalogue d
WHERE d.id = %(obsid)s
