-- Items of one order by status.
SELECT status, count(*)::int
FROM {schema}.card_order_items
WHERE order_id = %(id)s
GROUP BY 1
ORDER BY 1
