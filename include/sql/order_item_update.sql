-- An order item's status as the API reports it (a harvested item stays harvested).
UPDATE {schema}.card_order_items
SET status = CASE WHEN status = 'harvested' THEN status ELSE %(status)s END,
    remote_item_id = coalesce(%(remote_item_id)s, remote_item_id),
    processed_name = coalesce(%(processed_name)s, processed_name),
    extra_info = %(extra_info)s,
    updated_at = now()
WHERE order_id = %(order_id)s AND source_reference = %(ref)s
