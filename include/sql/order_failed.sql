-- The API refused an order (refused, HTTP 4xx) or could not be reached (error); its items
-- get the same status and may be ordered again by a later run.
WITH o AS (
    UPDATE {schema}.card_orders
    SET status = %(status)s, http_status = %(http_status)s, error = %(error)s, finished_at = now()
    WHERE id = %(id)s
    RETURNING id
)
UPDATE {schema}.card_order_items i
SET status = %(status)s, updated_at = now()
FROM o
WHERE i.order_id = o.id
