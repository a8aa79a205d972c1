INSERT INTO {schema}.cbm_schema (version) VALUES (%(version)s)
