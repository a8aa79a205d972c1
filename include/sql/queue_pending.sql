-- Claimable scenes of a stage (the conditions of queue_claim.sql, without locking).
WITH held AS MATERIALIZED (
    SELECT classid, objid FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT s.obsid, c.reference
FROM {schema}.scene_stages s
JOIN {schema}.dias_catalogue c ON c.id = s.obsid
WHERE s.stage = %(stage)s
  AND (s.status = 'ingested'
       OR (s.status = 'inprogress'
           AND (s.lease_expires < now()
                OR NOT EXISTS (SELECT 1 FROM held h
                               WHERE h.classid = ((hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535))::oid
                                 AND h.objid = (s.obsid * 8 + %(stage_idx)s)::oid))))
  AND s.attempts < %(max_attempts)s
  AND (%(start)s::timestamp IS NULL OR c.obstime >= %(start)s::timestamp)
  AND (%(end)s::timestamp IS NULL OR c.obstime < %(end)s::timestamp)
  AND (%(requires)s::text IS NULL OR EXISTS (
          SELECT 1 FROM {schema}.scene_stages r
          WHERE r.obsid = s.obsid AND r.stage = %(requires)s::text AND r.status = 'extracted'))
ORDER BY c.obstime, c.id
