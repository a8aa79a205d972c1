-- Parcel viewer: record a refreshed summary (results version it reflects, parcels, duration).
INSERT INTO {schema}.viewer_summary_state (year, version, refreshed_at, parcels, seconds)
SELECT %(year)s, %(version)s, now(), (SELECT count(*) FROM {schema}.viewer_parcel_summary WHERE year = %(year)s),
       extract(epoch FROM clock_timestamp() - now())
ON CONFLICT (year) DO UPDATE SET version = EXCLUDED.version, refreshed_at = EXCLUDED.refreshed_at,
                                 parcels = EXCLUDED.parcels, seconds = EXCLUDED.seconds
