-- Operator re-run of scenes' stages (all scenes when obsids is NULL). Stages in progress are left to their holder unless
-- it is gone (liveness lock released: the worker died).
WITH held AS MATERIALIZED (
    SELECT classid, objid FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
UPDATE {schema}.scene_stages s
SET status = 'ingested', attempts = 0, retryable = true, gate_released = false, lease_owner = NULL,
    lease_expires = NULL, updated_at = now()
WHERE (%(obsids)s::int[] IS NULL OR s.obsid = ANY (%(obsids)s::int[])) AND s.stage = ANY (%(stages)s::text[])
  AND (s.status <> 'inprogress'
       OR (NOT EXISTS (SELECT 1 FROM held h
                       WHERE h.classid = ((hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535))::oid
                         AND h.objid = (s.obsid * 8 + CASE s.stage WHEN 'scl' THEN 0 WHEN 's2_10m' THEN 1
                                        WHEN 's2_20m' THEN 2 WHEN 'bs' THEN 3 ELSE 4 END)::oid)
           AND pg_try_advisory_xact_lock_shared(
                   (hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535),
                   s.obsid * 8 + CASE s.stage WHEN 'scl' THEN 0 WHEN 's2_10m' THEN 1
                                 WHEN 's2_20m' THEN 2 WHEN 'bs' THEN 3 ELSE 4 END)))
