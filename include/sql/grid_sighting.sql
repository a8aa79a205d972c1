-- Count a scene on a lattice without a stored index (its bands count once); returns how
-- many scenes it has had.
INSERT INTO {schema}.grid_sightings (epsg, resolution, origin_x, origin_y, all_touched, scenes, last_obsid)
VALUES (%(epsg)s, %(res)s, %(ox)s, %(oy)s, %(all_touched)s, 1, %(obsid)s)
ON CONFLICT (epsg, resolution, origin_x, origin_y, all_touched)
DO UPDATE SET scenes = {schema}.grid_sightings.scenes
                       + CASE WHEN {schema}.grid_sightings.last_obsid IS DISTINCT FROM EXCLUDED.last_obsid
                              THEN 1 ELSE 0 END,
              last_obsid = EXCLUDED.last_obsid, last_seen = now()
RETURNING scenes
