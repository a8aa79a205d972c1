-- Parcel viewer: the summaries of an AOI (NULL table name: none was ever refreshed).
SELECT s.year, s.version, s.refreshed_at, s.parcels, s.seconds
FROM {schema}.viewer_summary_state s
ORDER BY s.year
