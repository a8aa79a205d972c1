-- Bounding box of one parcel in EPSG:4326, expanded by %(margin)s degrees (NULL geometry ->
-- NULL box); no row when the pid does not exist. Used to select the scenes whose footprint
-- can hold the parcel (GiST index on dias_catalogue.footprint).
SELECT ST_Expand(ST_Transform(ST_Envelope(p.wkb_geometry), 4326), %(margin)s)
FROM {schema}.{parcels} p
WHERE p.ogc_fid = %(pid)s
