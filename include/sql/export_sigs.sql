-- Canonical signatures of one datatake, for COPY ... TO STDOUT (CSV): the parcel_observations
-- view (the canonical rule of schema_views.sql) joined with sigs, by pid and band. psycopg
-- binds the datatake client-side (COPY takes no server parameters); the qual is pushed below
-- the view's window, since the datatake is one of its partition columns.
COPY (
    SELECT o.pid, o.obsid, o.obstime, trim(o.card), trim(o.sensor), o.datatake, o.tile, o.epsg,
           o.relative_orbit, o.orbit_direction, o.cloudfree::text, trim(s.band),
           s.count, s.mean, s.std, s.min, s.max, s.p25, s.p50, s.p75
    FROM {schema}.parcel_observations o
    JOIN {schema}.sigs s ON s.obsid = o.obsid AND s.pid = o.pid
    WHERE o.datatake = %(datatake)s
    ORDER BY o.pid, s.band
) TO STDOUT WITH (FORMAT csv)
