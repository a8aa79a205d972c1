-- Parcel viewer: one summary refresh per AOI schema and year at a time, in any process
-- (transaction-level advisory lock; false: another refresh is running).
SELECT pg_try_advisory_xact_lock(hashtext(%(key)s))
