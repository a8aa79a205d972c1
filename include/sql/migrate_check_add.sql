-- migrate-partitions, step 1: the range the old table will cover as a partition, not yet
-- validated (instant). {hi} is an integer literal (psycopg.sql.Literal).
ALTER TABLE {schema}.{table} DROP CONSTRAINT IF EXISTS {check};
ALTER TABLE {schema}.{table} ADD CONSTRAINT {check} CHECK (obsid >= 0 AND obsid < {hi}) NOT VALID
