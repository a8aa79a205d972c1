-- Queue every configured stage of the AOI's scenes: one scene_stages row per (scene, stage)
-- for scenes of the stage's card whose footprint intersects the AOI. Idempotent.
INSERT INTO {schema}.scene_stages (obsid, stage)
SELECT c.id, s.stage
FROM {schema}.dias_catalogue c
JOIN unnest(%(stages)s::text[], %(cards)s::text[]) AS s(stage, card) ON s.card = c.card
JOIN {schema}.aois a ON a.name = %(aoi)s
WHERE c.status <> 'Superseded'
  AND c.footprint && a.wkb_geometry
  AND ST_Intersects(c.footprint, a.wkb_geometry)
  AND (%(start)s::timestamp IS NULL OR c.obstime >= %(start)s::timestamp)
  AND (%(end)s::timestamp IS NULL OR c.obstime <= %(end)s::timestamp)
ON CONFLICT (obsid, stage) DO NOTHING
