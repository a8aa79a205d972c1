-- Give up on the parent's lock after 10 s (a maintenance ANALYZE of the parent holds it)
-- rather than queueing; the caller retries.
SET LOCAL lock_timeout = '10s'
