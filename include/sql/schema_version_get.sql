-- Recorded schema version of an AOI schema (the caller checked that the table exists).
SELECT max(version) FROM {schema}.cbm_schema
