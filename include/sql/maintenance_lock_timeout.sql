-- Maintenance gives up on a table lock after maintenance.lock_timeout_s (default 10 s)
-- instead of queueing in front of workers.
SELECT set_config('lock_timeout', %(timeout)s, false)
