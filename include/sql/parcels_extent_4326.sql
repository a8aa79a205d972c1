-- The parcel set's extent in EPSG:4326 (densified box, follows the projection), its area
-- and the parcels' own area (an outline implausibly large for the parcels signals
-- coordinates of another CRS).
WITH e AS (SELECT ST_Extent(wkb_geometry) AS x, sum(ST_Area(wkb_geometry)) AS parcel_area
           FROM {schema}.{staging}),
     b AS (SELECT ST_Transform(ST_Segmentize(ST_SetSRID(x::geometry, %(srid)s::int),
                                             greatest(ST_XMax(x) - ST_XMin(x), ST_YMax(x) - ST_YMin(x)) / 32.0
                                             + 1e-9), 4326) AS g,
                  ST_Area(ST_SetSRID(x::geometry, %(srid)s::int)) AS box_area, parcel_area
           FROM e)
SELECT ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g), box_area, parcel_area,
       ST_Area(g::geography) / 1e6
FROM b
