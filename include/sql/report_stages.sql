SELECT d.card, t.stage, t.status, count(*)::int
FROM {schema}.scene_stages t JOIN {schema}.dias_catalogue d ON d.id = t.obsid
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
