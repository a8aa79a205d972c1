-- Create or replace the stored parcel index of a lattice; returns its grid_id.
INSERT INTO {schema}.parcel_grids
    (epsg, resolution, origin_x, origin_y, all_touched, parcels_version, x0, y0, width, height,
     n_parcels, n_runs, seconds, created_at)
VALUES (%(epsg)s, %(res)s, %(ox)s, %(oy)s, %(all_touched)s, %(version)s, %(x0)s, %(y0)s,
        %(width)s, %(height)s, %(n_parcels)s, %(n_runs)s, %(seconds)s, now())
ON CONFLICT (epsg, resolution, origin_x, origin_y, all_touched) DO UPDATE
SET parcels_version = EXCLUDED.parcels_version, x0 = EXCLUDED.x0, y0 = EXCLUDED.y0,
    width = EXCLUDED.width, height = EXCLUDED.height, n_parcels = EXCLUDED.n_parcels,
    n_runs = EXCLUDED.n_runs, seconds = EXCLUDED.seconds, created_at = now()
RETURNING grid_id
