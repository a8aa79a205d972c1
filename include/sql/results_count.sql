-- Whether the schema holds results (cheap: stops at the first row of each table).
SELECT (SELECT count(*) FROM (SELECT 1 FROM {schema}.sigs LIMIT 1) s)
     + (SELECT count(*) FROM (SELECT 1 FROM {schema}.hists LIMIT 1) h)
