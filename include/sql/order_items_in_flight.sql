-- Identities of source products already ordered for a card whose item may not be ordered
-- again (every status but the re-orderable ones).
SELECT DISTINCT identity
FROM {schema}.card_order_items
WHERE card = %(card)s AND status <> ALL (%(reorderable)s::text[])
