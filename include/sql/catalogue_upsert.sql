-- Insert one normalised catalogue record. A known reference is left untouched (a re-harvest
-- is a no-op), unless the catalogue modified the record since (a newer modified_at: OData
-- ModificationDate, STAC updated): then its metadata is refreshed (footprint, cloud cover,
-- product path, band hrefs), never its status or stages. Returns the id and whether the row
-- is new; no row when the reference was already known and not refreshed.
INSERT INTO {schema}.dias_catalogue AS d
    (obstime, reference, sensor, card, footprint, tile, epsg, relative_orbit, orbit_direction,
     processing_baseline, cloud_cover, product_identifier, catalogue_id, source, assets, modified_at)
VALUES
    (%(obstime)s, %(reference)s, %(sensor)s, %(card)s,
     ST_Multi(ST_GeomFromText(%(footprint_wkt)s, 4326)), %(tile)s, %(epsg)s, %(relative_orbit)s,
     %(orbit_direction)s, %(processing_baseline)s, %(cloud_cover)s, %(product_identifier)s,
     %(catalogue_id)s, %(source)s, %(assets)s::jsonb, %(modified)s)
ON CONFLICT (reference) DO UPDATE
SET footprint = EXCLUDED.footprint, cloud_cover = EXCLUDED.cloud_cover,
    product_identifier = EXCLUDED.product_identifier, catalogue_id = EXCLUDED.catalogue_id,
    assets = EXCLUDED.assets, modified_at = EXCLUDED.modified_at, source = EXCLUDED.source
WHERE EXCLUDED.modified_at > d.modified_at AND EXCLUDED.source = d.source
RETURNING id, (xmax = 0) AS inserted
