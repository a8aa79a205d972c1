-- Placed orders not finished yet and not polled within %(min_age)s.
SELECT id, remote_id, name
FROM {schema}.card_orders
WHERE remote_id IS NOT NULL AND finished_at IS NULL
  AND (polled_at IS NULL OR polled_at < now() - %(min_age)s::interval)
ORDER BY id
