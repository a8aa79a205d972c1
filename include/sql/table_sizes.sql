-- Total size (bytes, with indexes and TOAST) of the schema's tables; a partitioned table
-- (sigs, hists) counts the sum of its partitions, which are not listed themselves.
SELECT c.relname::text,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint
                  FROM pg_partition_tree(c.oid) t WHERE t.isleaf)
            ELSE pg_total_relation_size(c.oid) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1
