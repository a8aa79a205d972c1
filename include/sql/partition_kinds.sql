-- relkind of sigs and hists: 'p' partitioned (current schema), 'r' a plain table of an
-- earlier version (convert with `cbm migrate-partitions`), NULL missing.
SELECT (SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%(sigs)s)),
       (SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%(hists)s))
