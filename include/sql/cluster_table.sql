-- Rewrites the table in pid order (exclusive lock; needs room for a copy).
CLUSTER {schema}.{table} USING {index}
