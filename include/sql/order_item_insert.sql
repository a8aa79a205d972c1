-- One source product of an order.
INSERT INTO {schema}.card_order_items (order_id, source_reference, card, identity, obstime, status)
VALUES (%(order_id)s, %(ref)s, %(card)s, %(identity)s, %(obstime)s, %(status)s)
ON CONFLICT (order_id, source_reference) DO NOTHING
