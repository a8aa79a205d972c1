-- Record how one card's harvest ended (ok / failed) and what it counted.
UPDATE {schema}.harvest_log
SET finished_at = now(), status = %(status)s, error = %(error)s,
    pages = %(pages)s, read = %(read)s, inserted = %(inserted)s, existing = %(existing)s,
    not_card = %(not_card)s, skipped = %(skipped)s, flagged = %(flagged)s, filtered = %(filtered)s
WHERE id = %(id)s
