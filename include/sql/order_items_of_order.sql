-- The status of an ODP order's (single) item from the order's status (poll); a harvested
-- item stays harvested; the output name and status message are kept when given.
UPDATE {schema}.card_order_items
SET status = CASE WHEN status = 'harvested' THEN status ELSE %(status)s END,
    remote_item_id = coalesce(%(remote_item_id)s, remote_item_id),
    processed_name = coalesce(%(processed_name)s, processed_name),
    extra_info = %(extra_info)s,
    updated_at = now()
WHERE order_id = %(order_id)s
