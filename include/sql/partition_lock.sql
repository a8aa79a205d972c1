-- One creator of result partitions per schema at a time (transaction advisory lock).
SELECT pg_advisory_xact_lock(hashtext(%(key)s))
