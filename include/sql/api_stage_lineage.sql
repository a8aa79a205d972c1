-- Processing state, lineage and quality of the stages of some scenes (NULL lineage for
-- rows written before lineage was recorded).
SELECT t.obsid, t.stage, t.status, t.lineage, t.quality, t.rows, t.parcels, t.updated_at, t.last_error
FROM {schema}.scene_stages t
WHERE t.obsid = ANY (%(obsids)s::integer[])
ORDER BY t.obsid, t.stage
