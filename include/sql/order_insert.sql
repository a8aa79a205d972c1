-- Record an order before it is sent (status submitting); returns its local id.
INSERT INTO {schema}.card_orders (card, processor, name, window_start, window_end, status, n_items)
VALUES (%(card)s, %(processor)s, %(name)s, %(start)s, %(end)s, %(status)s, %(n_items)s)
RETURNING id
