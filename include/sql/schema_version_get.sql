-- Recorded schema version of an AOI schema (the caller checked that the table exists).
SELECT version FROM {schema}.cbm_schema ORDER BY applied_at DESC, version DESC LIMIT 1
