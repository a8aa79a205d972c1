-- Parcel viewer: extent of the parcel set in EPSG:4326 (xmin, ymin, xmax, ymax) and the number
-- of parcels (one scan of the parcel table; the caller caches it per results version).
SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), n
FROM (SELECT ST_Transform(ST_SetSRID(ST_Extent(p.wkb_geometry)::geometry, %(srid)s), 4326) AS e, count(*) AS n
      FROM {schema}.{parcels} p) x
