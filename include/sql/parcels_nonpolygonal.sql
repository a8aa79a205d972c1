-- Features that are not polygons (points, lines, ... in a polygon file): excluded from the
-- parcel set (a line "parcel" would get signatures of its touched pixels on every scene).
DELETE FROM {schema}.{staging}
WHERE wkb_geometry IS NOT NULL AND NOT ST_IsEmpty(wkb_geometry)
  AND GeometryType(wkb_geometry) NOT IN ('POLYGON', 'MULTIPOLYGON')
RETURNING ogc_fid, GeometryType(wkb_geometry)
