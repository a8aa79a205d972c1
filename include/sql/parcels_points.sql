-- A point on each non-empty parcel, in the parcel CRS (for the outlier test).
SELECT ogc_fid, ST_X(p), ST_Y(p)
FROM (SELECT ogc_fid, ST_PointOnSurface(wkb_geometry) AS p FROM {schema}.{staging}
      WHERE wkb_geometry IS NOT NULL AND NOT ST_IsEmpty(wkb_geometry)) s
ORDER BY ogc_fid
