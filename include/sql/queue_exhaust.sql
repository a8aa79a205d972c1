-- Scenes whose holder is gone (lease expired, or its liveness lock released because the
-- worker died) after their last allowed attempt end in a named error instead of being
-- claimed forever (a scene that kills its worker every time).
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
       OR NOT EXISTS (SELECT 1 FROM held h
                      WHERE h.classid = ((hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535))::oid
                        AND h.objid = (s.obsid * 8 + %(stage_idx)s)::oid))
  AND s.attempts >= %(max_attempts)s
  AND (%(obsids)s::int[] IS NULL OR s.obsid = ANY (%(obsids)s::int[]))
RETURNING s.obsid
