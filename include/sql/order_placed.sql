-- The API accepted an order: its remote id and status; its items become 'ordered'.
WITH o AS (
    UPDATE {schema}.card_orders
    SET remote_id = %(remote_id)s, status = %(status)s
    WHERE id = %(id)s
    RETURNING id
)
UPDATE {schema}.card_order_items i
SET status = 'ordered', updated_at = now()
FROM o
WHERE i.order_id = o.id
