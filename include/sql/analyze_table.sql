ANALYZE {schema}.{table}
