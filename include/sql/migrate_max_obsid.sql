-- Largest obsid of an unpartitioned result table (served by its primary key).
SELECT max(obsid) FROM {schema}.{table}
