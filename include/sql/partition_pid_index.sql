-- An existing single-column index on pid of a table (the partition's share of the
-- optional sigs_pidx/hists_pidx), to CLUSTER with.
SELECT c.relname::text
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = to_regclass(%(table)s) AND i.indnatts = 1 AND a.attname = 'pid'
ORDER BY c.relname LIKE '%%\_cluster\_pid'   -- a permanent index first, a leftover temporary one last
LIMIT 1
