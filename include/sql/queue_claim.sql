-- Claim up to %(n)s pending scenes of a stage, oldest first, atomically: rows locked by
-- another claimer are skipped, so concurrent workers never get the same scene. A scene
-- whose lease expired, or is held by an earlier attempt of the same task (steal prefix),
-- is claimable again; each claim counts as an attempt.
WITH cand AS (
    SELECT s.obsid
    FROM {schema}.scene_stages s
    JOIN {schema}.dias_catalogue c ON c.id = s.obsid
    WHERE s.stage = %(stage)s
      AND (s.status = 'ingested'
           OR (s.status = 'inprogress' AND (s.lease_expires < now()
                                            OR starts_with(s.lease_owner, %(steal)s::text))))
      AND s.attempts < %(max_attempts)s
      AND (%(obsids)s::int[] IS NULL OR s.obsid = ANY (%(obsids)s::int[]))
      AND (%(start)s::timestamp IS NULL OR c.obstime >= %(start)s::timestamp)
      AND (%(end)s::timestamp IS NULL OR c.obstime < %(end)s::timestamp)
      AND (%(requires)s::text IS NULL OR EXISTS (
              SELECT 1 FROM {schema}.scene_stages r
              WHERE r.obsid = s.obsid AND r.stage = %(requires)s::text AND r.status = 'extracted'))
    ORDER BY c.obstime, c.id
    LIMIT %(n)s
    FOR UPDATE OF s SKIP LOCKED
)
UPDATE {schema}.scene_stages s
SET status = 'inprogress',
    lease_owner = %(owner)s,
    lease_expires = now() + make_interval(secs => %(lease_s)s),
    attempts = s.attempts + 1,
    updated_at = now()
FROM cand, {schema}.dias_catalogue c
WHERE s.obsid = cand.obsid AND s.stage = %(stage)s AND c.id = s.obsid
RETURNING s.obsid, s.attempts, c.reference, c.obstime, c.card, c.product_identifier, c.epsg,
          c.tile, c.processing_baseline
