-- Orders left 'submitting' by a crash between recording and the API's answer: their
-- outcome is unknown; mark them 'error' so that their products can be ordered again.
WITH o AS (
    UPDATE {schema}.card_orders
    SET status = 'error', finished_at = now(),
        error = 'submission outcome unknown (the ordering task stopped during the request): '
                || 'check the DIAS order list for an order of this name'
    WHERE status = 'submitting' AND submitted_at < now() - %(older_than)s::interval
    RETURNING id
)
UPDATE {schema}.card_order_items i
SET status = 'error', updated_at = now()
FROM o
WHERE i.order_id = o.id
