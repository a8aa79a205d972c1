-- Parcels that contain (or touch) a point given in the parcel CRS (GiST index of the parcels).
-- The caller transforms lon/lat with pyproj: a point outside the CRS's domain has no parcels
-- instead of failing in ST_Transform.
SELECT p.ogc_fid
FROM {schema}.{parcels} p
WHERE ST_Intersects(p.wkb_geometry, ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), %(srid)s))
ORDER BY p.ogc_fid
LIMIT %(limit)s
