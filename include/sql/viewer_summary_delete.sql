-- Parcel viewer: drop the summary of one year before it is recomputed (same transaction).
DELETE FROM {schema}.viewer_parcel_summary WHERE year = %(year)s
