-- The parcels (non-empty) that intersect a scene: its image extent (a box in the scene's
-- UTM EPSG, densified before the transform) and, when known, its catalogue footprint
-- (EPSG:4326 WKB); as WKB in the scene's EPSG, by parcel id. Served by the parcel
-- table's GiST index.
WITH area AS (
    SELECT ST_Transform(ST_Segmentize(ST_MakeEnvelope(%(minx)s, %(miny)s, %(maxx)s, %(maxy)s, %(epsg)s::int),
                                      %(step)s), %(srid)s::int) AS box,
           CASE WHEN %(footprint)s::bytea IS NULL THEN NULL
                ELSE ST_Transform(ST_GeomFromWKB(%(footprint)s::bytea, 4326), %(srid)s::int) END AS fp
)
SELECT p.ogc_fid, ST_AsBinary(ST_Transform(p.wkb_geometry, %(epsg)s::int))
FROM {schema}.{parcels} p, area
WHERE p.wkb_geometry && area.box
  AND ST_Intersects(p.wkb_geometry, area.box)
  AND (area.fp IS NULL OR ST_Intersects(p.wkb_geometry, area.fp))
  AND NOT ST_IsEmpty(p.wkb_geometry)
ORDER BY p.ogc_fid
