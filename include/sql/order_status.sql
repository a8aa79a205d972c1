-- Every recorded order with its items by status, newest first.
SELECT o.id, o.remote_id, o.card, o.processor, o.name, o.status, o.n_items, o.http_status, o.error,
       o.submitted_at, o.polled_at, o.finished_at,
       (SELECT jsonb_object_agg(s.status, s.n)
        FROM (SELECT status, count(*) AS n FROM {schema}.card_order_items
              WHERE order_id = o.id GROUP BY status) s) AS items
FROM {schema}.card_orders o
ORDER BY o.id DESC
