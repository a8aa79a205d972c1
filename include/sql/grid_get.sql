-- The stored parcel index of a lattice, if built for the current parcel version.
SELECT grid_id, x0, y0, width, height, created_at
FROM {schema}.parcel_grids
WHERE epsg = %(epsg)s AND resolution = %(res)s AND origin_x = %(ox)s AND origin_y = %(oy)s
  AND all_touched = %(all_touched)s AND parcels_version = %(version)s
