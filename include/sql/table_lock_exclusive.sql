-- CLUSTER's lock taken first (maintenance.lock_timeout_s applies), so that nothing is
-- built for a CLUSTER that cannot run.
LOCK TABLE {schema}.{table} IN ACCESS EXCLUSIVE MODE
