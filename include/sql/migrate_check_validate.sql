-- migrate-partitions, step 2: one scan under SHARE UPDATE EXCLUSIVE (writes go on).
ALTER TABLE {schema}.{table} VALIDATE CONSTRAINT {check}
