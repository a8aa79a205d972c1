-- Attributes, SRID, geodesic area (m2), centroid (EPSG:4326) and optionally the GeoJSON
-- geometry of some parcels (in the parcel CRS with a short "crs" member, as the JRC API, or
-- in EPSG:4326 without one, RFC 7946), in the order of %(pids)s.
SELECT p.ogc_fid,
       to_jsonb(p) - 'wkb_geometry',
       ST_SRID(p.wkb_geometry),
       ST_Area(ST_Transform(p.wkb_geometry, 4326)::geography),
       ST_X(ST_Transform(ST_Centroid(p.wkb_geometry), 4326)),
       ST_Y(ST_Transform(ST_Centroid(p.wkb_geometry), 4326)),
       CASE WHEN NOT %(with_geometry)s THEN NULL
            WHEN %(wgs84)s THEN ST_AsGeoJSON(ST_Transform(p.wkb_geometry, 4326), 8)
            ELSE ST_AsGeoJSON(p.wkb_geometry, %(digits)s, 2) END
FROM unnest(%(pids)s::integer[]) WITH ORDINALITY AS w(pid, k)
JOIN {schema}.{parcels} p ON p.ogc_fid = w.pid
ORDER BY w.k
