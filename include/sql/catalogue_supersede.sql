-- A Sentinel-2 product republished for the same mission, tile and datatake (the datatake
-- sensing start of the name, 3rd field: catalogues report different obstimes for one
-- product, e.g. Earth Search the granule time) with a newer processing baseline, or the same
-- baseline and a later generation time (7th name field; the L2A_N0500 reprocessing), supersedes
-- the older one: superseded_by is set (the canonical views rank it last, so it never gives a
-- second canonical observation). If no stage of the older one started, it becomes
-- 'Superseded' and its pending stages are dropped; extracted rows stay under its own obsid.
WITH pairs AS (
    SELECT DISTINCT ON (o.id) o.id, n.id AS newer, o.status
    FROM {schema}.dias_catalogue o
    JOIN {schema}.dias_catalogue n
      ON n.card = 's2' AND n.sensor = o.sensor AND n.tile = o.tile AND n.id <> o.id
     AND split_part(n.reference, '_', 3) = split_part(o.reference, '_', 3)
     AND (n.processing_baseline, split_part(n.reference, '_', 7))
         > (o.processing_baseline, split_part(o.reference, '_', 7))
    WHERE o.card = 's2' AND n.status <> 'Superseded'
    ORDER BY o.id, n.processing_baseline DESC, split_part(n.reference, '_', 7) DESC
), old AS (
    SELECT p.id FROM pairs p
    WHERE p.status = 'ingested'
      AND NOT EXISTS (SELECT 1 FROM {schema}.scene_stages s
                      WHERE s.obsid = p.id AND s.status <> 'ingested')
), gone AS (
    DELETE FROM {schema}.scene_stages s USING old WHERE s.obsid = old.id
)
UPDATE {schema}.dias_catalogue c
SET superseded_by = p.newer,
    status = CASE WHEN p.id IN (SELECT id FROM old) THEN 'Superseded' ELSE c.status END
FROM pairs p
WHERE c.id = p.id AND (c.superseded_by IS DISTINCT FROM p.newer OR p.id IN (SELECT id FROM old))
