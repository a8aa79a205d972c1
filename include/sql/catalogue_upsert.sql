-- Insert one normalised catalogue record; a known reference is left untouched (re-harvest
-- is a no-op). Returns the new id, or no row when the reference already exists.
INSERT INTO {schema}.dias_catalogue
    (obstime, reference, sensor, card, footprint, tile, epsg, relative_orbit, orbit_direction,
     processing_baseline, cloud_cover, product_identifier, catalogue_id, source)
VALUES
    (%(obstime)s, %(reference)s, %(sensor)s, %(card)s,
     ST_Multi(ST_GeomFromText(%(footprint_wkt)s, 4326)), %(tile)s, %(epsg)s, %(relative_orbit)s,
     %(orbit_direction)s, %(processing_baseline)s, %(cloud_cover)s, %(product_identifier)s,
     %(catalogue_id)s, %(source)s)
ON CONFLICT (reference) DO NOTHING
RETURNING id
