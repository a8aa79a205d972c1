CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} (pid)
