-- Stages to put back in the queue: in progress but their holder is gone (liveness lock
-- released: the worker died; or the lease expired: stuck), or failed with a retryable
-- error and attempts left. "completed" tells whether the stage ever finished (then its
-- stored rows are a complete result and are kept). The holder test is the one of
-- queue_claim.sql (pg_locks snapshot for our own locks, a try-lock for the current state).
WITH held AS MATERIALIZED (
    SELECT classid, objid FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT s.obsid, s.rows IS NOT NULL AS completed
FROM {schema}.scene_stages s
WHERE s.stage = %(stage)s
  AND ((s.status = 'inprogress'
        AND (s.lease_expires < now()
             OR (NOT EXISTS (SELECT 1 FROM held h
                               WHERE h.classid = ((hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535))::oid
                                 AND h.objid = (s.obsid * 8 + %(stage_idx)s)::oid)
                 AND pg_try_advisory_xact_lock_shared((hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535),
                                                      s.obsid * 8 + %(stage_idx)s))))
       OR (s.status NOT IN ('ingested', 'inprogress', 'extracted', 'No parcels', 'Quarantined')
           AND s.retryable AND s.attempts < %(max_attempts)s))
ORDER BY s.obsid
FOR UPDATE OF s SKIP LOCKED
