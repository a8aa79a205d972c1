-- Maintenance gives up on a table lock after 10 s instead of queueing in front of workers.
SET lock_timeout = '10s'
