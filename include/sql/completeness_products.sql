-- Every product of the given cards over the AOI (the whole history: it sets each track's
-- revisit phase and each satellite's service period), with its extraction status summary.
SELECT c.card, c.sensor, c.tile, c.relative_orbit, c.obstime, c.status
FROM {schema}.dias_catalogue c
JOIN {schema}.aois a ON a.name = %(aoi)s
WHERE c.card = ANY (%(cards)s::text[])
  AND c.status <> 'Superseded'
  AND c.footprint && a.wkb_geometry
  AND ST_Intersects(c.footprint, a.wkb_geometry)
ORDER BY c.obstime
