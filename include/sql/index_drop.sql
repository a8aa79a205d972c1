DROP INDEX IF EXISTS {schema}.{index}
