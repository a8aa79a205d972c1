DROP TABLE IF EXISTS {schema}.{staging}
