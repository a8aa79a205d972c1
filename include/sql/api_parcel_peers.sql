-- Parcels of the same crop as parcel %(pid)s within %(distance)s metres (geodesic distance
-- between the two geometries, 0 when they touch), nearest first. The && prefilter in the
-- parcel CRS (%(expand)s native units, generous) uses the GiST index; ST_DWithin on
-- geography decides. Parcels without a crop value have no peers. Peers of a geodesic area up
-- to %(min_area)s m2 are left out (the JRC parcelPeers drops those up to 3,000 m2; 0 keeps all).
SELECT q.ogc_fid,
       ST_Distance(ST_Transform(q.wkb_geometry, 4326)::geography, ST_Transform(p.wkb_geometry, 4326)::geography)
FROM {schema}.{parcels} p
JOIN {schema}.{parcels} q
  ON q.wkb_geometry && ST_Expand(p.wkb_geometry, %(expand)s)
 AND q.ogc_fid <> p.ogc_fid
 AND q.{crop} = p.{crop}
WHERE p.ogc_fid = %(pid)s
  AND ST_DWithin(ST_Transform(q.wkb_geometry, 4326)::geography, ST_Transform(p.wkb_geometry, 4326)::geography,
                 %(distance)s)
  AND (%(min_area)s <= 0 OR ST_Area(ST_Transform(q.wkb_geometry, 4326)::geography) > %(min_area)s)
ORDER BY 2, 1
LIMIT %(limit)s
