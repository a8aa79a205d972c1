-- Keep dias_catalogue.status a summary of the scenes' stages (rows locked by catalogue_lock):
-- a named error of any stage; inprogress if a stage is claimed; extracted when all stages
-- are; 'No parcels' when all are extracted or 'No parcels'; else ingested. obsids NULL: every scene.
WITH agg AS (
    SELECT obsid,
           CASE
               WHEN bool_or(status NOT IN ('ingested', 'inprogress', 'extracted', 'No parcels'))
                   THEN min(status) FILTER (WHERE status NOT IN ('ingested', 'inprogress', 'extracted', 'No parcels'))
               WHEN bool_or(status = 'inprogress') THEN 'inprogress'
               WHEN bool_and(status = 'extracted') THEN 'extracted'
               WHEN bool_and(status IN ('extracted', 'No parcels')) THEN 'No parcels'
               ELSE 'ingested'
           END AS summary
    FROM {schema}.scene_stages
    WHERE (%(obsids)s::int[] IS NULL OR obsid = ANY (%(obsids)s::int[]))
    GROUP BY obsid
)
UPDATE {schema}.dias_catalogue c
SET status = agg.summary
FROM agg
WHERE c.id = agg.obsid AND c.status IS DISTINCT FROM agg.summary
