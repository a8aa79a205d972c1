-- ODP quota use of the AOI's orders (cbm_ops.harvest.ordering.quota_use): items submitted in
-- the current calendar month (UTC), every order but refused ones (failed and cancelled
-- count: conservative), and items queued or in progress at the service now.
SELECT count(*) FILTER (WHERE o.status <> 'refused'
                          AND o.submitted_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')::int,
       count(*) FILTER (WHERE i.status IN ('submitting', 'ordered', 'queued', 'in_progress'))::int
FROM {schema}.card_orders o
JOIN {schema}.card_order_items i ON i.order_id = o.id
