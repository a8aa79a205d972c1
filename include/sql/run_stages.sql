-- Stages finished (or failed) since a time: scenes, rows, parcels and seconds per status.
SELECT stage, status, count(*)::int, coalesce(sum(rows), 0)::bigint, coalesce(sum(parcels), 0)::bigint,
       coalesce(sum(seconds), 0)::float8
FROM {schema}.scene_stages
WHERE updated_at >= %(since)s AND status <> 'ingested'
GROUP BY 1, 2
ORDER BY 1, 2
