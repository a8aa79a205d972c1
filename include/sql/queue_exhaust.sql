-- Scenes whose holder is gone (lease expired, or its liveness lock released because the
-- worker died) after their last allowed attempt end in a named error instead of being
-- claimed forever (a scene that kills its worker every time). Gone: the lease expired, or
-- the liveness lock is released and the stage was not touched for grace_s seconds (a
-- worker whose connection dropped, e.g. in a database restart, reconnects and gives its
-- scene back within that time). The holder test is the one of queue_claim.sql.
WITH held AS MATERIALIZED (
    SELECT classid, objid FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
UPDATE {schema}.scene_stages s
SET status = 'Lease expired', retryable = false, lease_owner = NULL, lease_expires = NULL,
    last_error = 'worker gone ' || s.attempts || ' times (killed, or stuck past its lease)',
    updated_at = now()
WHERE s.stage = %(stage)s AND s.status = 'inprogress'
  AND (s.lease_expires < now()
       OR (s.updated_at < now() - make_interval(secs => %(grace_s)s)
           AND NOT EXISTS (SELECT 1 FROM held h
                         WHERE h.classid = ((hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535))::oid
                           AND h.objid = (s.obsid * 8 + %(stage_idx)s)::oid)
           AND pg_try_advisory_xact_lock_shared((hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535),
                                                s.obsid * 8 + %(stage_idx)s)))
  AND s.attempts >= %(max_attempts)s
  AND (%(obsids)s::int[] IS NULL OR s.obsid = ANY (%(obsids)s::int[]))
RETURNING s.obsid
