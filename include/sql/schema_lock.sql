-- Serialise concurrent schema setups of the same AOI (two DAG runs starting together).
SELECT pg_advisory_xact_lock(hashtext(%(key)s))
