-- Whether the AOI's outline (EPSG:4326) holds a point (lon, lat); false before its parcels are imported.
SELECT EXISTS (SELECT 1 FROM {schema}.aois a
               WHERE ST_Intersects(a.wkb_geometry, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)))
