-- Stages in a permanent error status (not retried), by status.
SELECT status, count(*)::int
FROM {schema}.scene_stages
WHERE status NOT IN ('ingested', 'inprogress', 'extracted', 'No parcels')
GROUP BY status
ORDER BY status
