-- Earliest sensing time of a card's ordered products not harvested yet, from orders placed
-- within %(days)s (a scheduled harvest reaches back to it so that the CARD products, which
-- carry their source's old sensing time, are picked up when they are published).
SELECT min(i.obstime)
FROM {schema}.card_order_items i
JOIN {schema}.card_orders o ON o.id = i.order_id
WHERE i.card = %(card)s
  AND i.status IN ('ordered', 'queued', 'in_progress', 'processing', 'downloading', 'done')
  AND o.submitted_at > now() - %(days)s::interval
