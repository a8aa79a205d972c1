-- Mixed layers: keep the polygonal parts of geometry collections (a field drawn with a
-- stray line or point keeps its polygon).
UPDATE {schema}.{staging}
SET wkb_geometry = ST_Multi(ST_CollectionExtract(wkb_geometry, 3))
WHERE wkb_geometry IS NOT NULL AND GeometryType(wkb_geometry) = 'GEOMETRYCOLLECTION'
