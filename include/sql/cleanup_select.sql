-- Stages to put back in the queue: stuck inprogress past their lease, or failed with a
-- retryable error and attempts left. "completed" tells whether the stage ever finished
-- (then its stored rows are a complete result and are kept).
SELECT obsid, rows IS NOT NULL AS completed
FROM {schema}.scene_stages
WHERE stage = %(stage)s
  AND ((status = 'inprogress' AND lease_expires < now())
       OR (status NOT IN ('ingested', 'inprogress', 'extracted', 'No parcels')
           AND retryable AND attempts < %(max_attempts)s))
ORDER BY obsid
FOR UPDATE SKIP LOCKED
