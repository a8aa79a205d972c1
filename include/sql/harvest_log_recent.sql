-- The latest harvests of the AOI, newest first.
SELECT id, card, window_start, window_end, started_at, finished_at, status, source, pages, read,
       inserted, existing, not_card, skipped, flagged, error, widened_from, note
FROM {schema}.harvest_log
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s
