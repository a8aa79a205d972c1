-- Sensing-time intervals covered by successful harvests of a card that start before
-- %(until)s: [window_start, min(window_end, started_at)] (nothing sensed after a harvest
-- ran can have been seen by it), in start order (merged by cbm_ops.catalogue.covered_intervals).
SELECT window_start, least(window_end, (started_at AT TIME ZONE 'UTC')) AS covered_end
FROM {schema}.harvest_log
WHERE card = %(card)s AND status = 'ok' AND window_start <= %(until)s
ORDER BY window_start, covered_end
