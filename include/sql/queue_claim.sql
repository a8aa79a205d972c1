-- Claim up to %(n)s claimable scenes of a stage, oldest first, atomically: rows locked by
-- another claimer are skipped, so concurrent workers never get the same scene; each claim
-- counts as an attempt.
-- Claimable: pending ('ingested'), or 'inprogress' whose holder is gone. A holder keeps a
-- session-level advisory lock keyed on (schema, attempt) and (obsid, stage) while it works
-- (cbm_ops.queue.Session): when its process, host or connection dies PostgreSQL releases
-- the lock at once, and the stage is claimable at the next claim. A lease that expired
-- also frees the stage (a holder alive but stuck); its late write is fenced by lease_owner.
-- The holder test has two parts. "held" is pg_locks read once, at the start of the
-- statement: it has this session's own locks (a shared request of ours would be granted
-- against them) but can miss the lock of a worker that claimed a row, and committed,
-- while this statement ran; PostgreSQL then rechecks these conditions on that worker's
-- new row version (FOR UPDATE under READ COMMITTED), and the stale "held" would pass it.
-- pg_try_advisory_xact_lock_shared asks the lock manager at that moment: it fails while
-- any other session holds the liveness lock, so a live worker's scene is never taken. The
-- shared lock it takes when the holder is gone blocks no claimer (claims lock the next
-- attempt's key) and ends with the transaction.
WITH held AS MATERIALIZED (
    SELECT classid, objid FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), cand AS (
    SELECT s.obsid
    FROM {schema}.scene_stages s
    JOIN {schema}.dias_catalogue c ON c.id = s.obsid
    WHERE s.stage = %(stage)s
      AND (s.status = 'ingested'
           OR (s.status = 'inprogress'
               AND (s.lease_expires < now()
                    OR (NOT EXISTS (SELECT 1 FROM held h
                                      WHERE h.classid = ((hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535))::oid
                                        AND h.objid = (s.obsid * 8 + %(stage_idx)s)::oid)
                        AND pg_try_advisory_xact_lock_shared((hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535),
                                                             s.obsid * 8 + %(stage_idx)s)))))
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
          c.tile, c.processing_baseline, s.gate_released, ST_AsBinary(c.footprint), c.source,
          c.assets
