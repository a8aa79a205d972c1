-- Record an order's polled summary; finished once all its items are final.
UPDATE {schema}.card_orders
SET status = %(status)s, summary = %(summary)s::jsonb, polled_at = now(),
    finished_at = CASE WHEN %(finished)s THEN coalesce(finished_at, now()) END
WHERE id = %(id)s
