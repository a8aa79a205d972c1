-- Result rows of the schema: exact below 10 million rows, else the planner's estimate
-- (counting hundreds of millions of rows would take minutes); `estimated` tells which.
WITH est AS (
    SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint AS n
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent IN (to_regclass(%(sigs)s), to_regclass(%(hists)s))
)
SELECT CASE WHEN est.n < 10000000
            THEN (SELECT count(*) FROM {schema}.sigs) + (SELECT count(*) FROM {schema}.hists)
            ELSE est.n END,
       est.n >= 10000000
FROM est
