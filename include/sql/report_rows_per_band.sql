SELECT trim(band), count(*)::bigint FROM {schema}.sigs GROUP BY 1 ORDER BY 1
