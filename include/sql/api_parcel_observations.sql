-- Observations of one parcel, raw, each with its canonical flag: the rule of
-- include/sql/schema_views.sql (keep the ORDER BY below identical to the one of the
-- parcel_observations view; tests/test_canonical.py checks both give the same rows),
-- applied to the scenes of the given cards whose footprint is near the parcel. Served by
-- the primary keys: one (obsid, pid) probe of sigs and hists per scene.
-- An acquisition belongs to the window of its datatake's first sensing time (as in
-- export_datatakes.sql): the canonical choice is made among all the datatake's scenes (a
-- day either side of the window), and only datatakes that start in the window are kept,
-- so a datatake across midnight of New Year's Eve is in one year, with one canonical row.
-- A datatake lasts minutes: its first sensing time is looked up only near the window's
-- edges ("edge"); elsewhere a scene's own time says it.
WITH edge AS (     -- datatakes with a scene within a day of the window's edges (cheap: two days)
    SELECT k.datatake, min(k.obstime) AS sensed
    FROM {schema}.scene_datatakes k
    WHERE k.card = ANY (%(cards)s::bpchar[])
      AND ((k.obstime >= %(start)s::timestamp - interval '1 day' AND k.obstime < %(start)s::timestamp + interval '1 day')
           OR (k.obstime >= %(end)s::timestamp - interval '1 day' AND k.obstime < %(end)s::timestamp + interval '1 day'))
    GROUP BY k.datatake
)
SELECT r.obsid, r.obstime, r.card, r.sensor, r.datatake, r.reference, r.tile, r.epsg,
       r.relative_orbit, r.orbit_direction, r.processing_baseline, r.scl_pixels, r.max_count,
       r.hist_out AS hist, r.cloudfree, r.canonical, r.duplicates
FROM (
    SELECT r.*, CASE WHEN %(with_hist)s THEN r.hist END AS hist_out,
           row_number() OVER (PARTITION BY r.datatake
                              ORDER BY r.scl_pixels DESC NULLS LAST, r.max_count DESC NULLS LAST,
                                       r.processing_baseline DESC NULLS LAST, r.reference) = 1 AS canonical,
           count(*) OVER (PARTITION BY r.datatake) AS duplicates
    FROM {schema}.parcel_observations_raw r
    WHERE r.pid = %(pid)s
      AND r.obsid = ANY (ARRAY(
          SELECT d.id FROM {schema}.dias_catalogue d
          WHERE d.card = ANY (%(cards)s::bpchar[])
            AND d.obstime >= %(start)s::timestamp - interval '1 day'
            AND d.obstime < %(end)s::timestamp + interval '1 day'
            AND (d.footprint IS NULL OR %(bbox)s::geometry IS NULL OR d.footprint && %(bbox)s::geometry)))
) r
LEFT JOIN edge t ON t.datatake = r.datatake
WHERE coalesce(t.sensed, r.obstime) >= %(start)s::timestamp AND coalesce(t.sensed, r.obstime) < %(end)s::timestamp
ORDER BY r.obstime, r.obsid
