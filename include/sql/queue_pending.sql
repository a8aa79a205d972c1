-- Claimable scenes of a stage (same conditions as queue_claim, without locking).
SELECT s.obsid, c.reference
FROM {schema}.scene_stages s
JOIN {schema}.dias_catalogue c ON c.id = s.obsid
WHERE s.stage = %(stage)s
  AND (s.status = 'ingested' OR (s.status = 'inprogress' AND s.lease_expires < now()))
  AND s.attempts < %(max_attempts)s
  AND (%(start)s::timestamp IS NULL OR c.obstime >= %(start)s::timestamp)
  AND (%(end)s::timestamp IS NULL OR c.obstime < %(end)s::timestamp)
  AND (%(requires)s::text IS NULL OR EXISTS (
          SELECT 1 FROM {schema}.scene_stages r
          WHERE r.obsid = s.obsid AND r.stage = %(requires)s::text AND r.status = 'extracted'))
ORDER BY c.obstime, c.id
