-- VACUUM cannot run in a transaction: executed on an autocommit connection.
VACUUM (ANALYZE) {schema}.{table}
