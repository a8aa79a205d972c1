SELECT card, status, count(*)::int FROM {schema}.dias_catalogue GROUP BY 1, 2 ORDER BY 1, 2
