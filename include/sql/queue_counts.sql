-- Scenes per card, stage and status.
SELECT c.card, s.stage, s.status, count(*)::int
FROM {schema}.scene_stages s JOIN {schema}.dias_catalogue c ON c.id = s.obsid
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
