-- Observations of one parcel, raw, each with its canonical flag: the rule of
-- include/sql/schema_views.sql (keep the ORDER BY below identical to the one of the
-- parcel_observations view; tests/test_canonical.py checks both give the same rows),
-- applied to the scenes of the given cards and time window whose footprint is near the
-- parcel. Served by the primary keys: one (obsid, pid) probe of sigs and hists per scene.
SELECT r.obsid, r.obstime, r.card, r.sensor, r.datatake, r.reference, r.tile, r.epsg,
       r.relative_orbit, r.orbit_direction, r.processing_baseline, r.scl_pixels, r.max_count,
       CASE WHEN %(with_hist)s THEN r.hist END AS hist, r.cloudfree,
       row_number() OVER (PARTITION BY r.datatake
                          ORDER BY r.scl_pixels DESC NULLS LAST, r.max_count DESC NULLS LAST,
                                   r.processing_baseline DESC NULLS LAST, r.reference) = 1 AS canonical,
       count(*) OVER (PARTITION BY r.datatake) AS duplicates
FROM {schema}.parcel_observations_raw r
WHERE r.pid = %(pid)s
  AND r.obsid = ANY (ARRAY(
      SELECT d.id FROM {schema}.dias_catalogue d
      WHERE d.card = ANY (%(cards)s::bpchar[])
        AND d.obstime >= %(start)s AND d.obstime < %(end)s
        AND (d.footprint IS NULL OR %(bbox)s::geometry IS NULL OR d.footprint && %(bbox)s::geometry)))
ORDER BY r.obstime, r.obsid
