-- Per parcel: canonical Sentinel-2 observations with a %(s2_band)s row, canonical CARD-BS
-- observations with a %(s1_band)s row, and cloud-free canonical S2 dates (SCL histogram with
-- none of 3, 8, 9, 10, 11), from the parcel_observations view (schema_views.sql).
SELECT o.pid,
       count(*) FILTER (WHERE o.card = 's2' AND %(s2_band)s = ANY (o.bands))::int,
       count(*) FILTER (WHERE o.card = 'bs' AND %(s1_band)s = ANY (o.bands))::int,
       count(*) FILTER (WHERE o.card = 's2' AND o.cloudfree)::int
FROM {schema}.parcel_observations o
GROUP BY o.pid
