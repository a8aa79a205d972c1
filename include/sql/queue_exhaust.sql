-- Scenes whose lease expired after their last allowed attempt end in a named error
-- instead of being claimed forever (a scene that kills its worker every time).
UPDATE {schema}.scene_stages s
SET status = 'Lease expired', retryable = false, lease_owner = NULL, lease_expires = NULL,
    last_error = 'lease expired ' || s.attempts || ' times (worker killed or stuck?)',
    updated_at = now()
WHERE s.stage = %(stage)s AND s.status = 'inprogress' AND s.lease_expires < now()
  AND s.attempts >= %(max_attempts)s
  AND (%(obsids)s::int[] IS NULL OR s.obsid = ANY (%(obsids)s::int[]))
RETURNING s.obsid
