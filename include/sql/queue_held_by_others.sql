-- Stages of a selection that a live holder other than %(owner)s is working on (liveness
-- lock held, lease running): what `extract` leaves alone, reported to the operator.
WITH held AS MATERIALIZED (
    SELECT classid, objid FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 2 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT s.obsid, s.lease_owner, s.lease_expires
FROM {schema}.scene_stages s
JOIN {schema}.dias_catalogue c ON c.id = s.obsid
WHERE s.stage = %(stage)s AND s.status = 'inprogress' AND s.lease_owner IS DISTINCT FROM %(owner)s
  AND s.lease_expires >= now()
  AND EXISTS (SELECT 1 FROM held h
              WHERE h.classid = ((hashtext(%(lock_ns)s) & -65536) | (s.attempts & 65535))::oid
                AND h.objid = (s.obsid * 8 + %(stage_idx)s)::oid)
  AND (%(obsids)s::int[] IS NULL OR s.obsid = ANY (%(obsids)s::int[]))
  AND (%(start)s::timestamp IS NULL OR c.obstime >= %(start)s::timestamp)
  AND (%(end)s::timestamp IS NULL OR c.obstime < %(end)s::timestamp)
ORDER BY s.obsid
