-- Row estimate of a table (planner statistics; -1 when never analysed).
SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%(table)s)
