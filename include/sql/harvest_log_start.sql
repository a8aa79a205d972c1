-- Record the start of one card's harvest (cbm_ops.catalogue.harvest); returns its id.
INSERT INTO {schema}.harvest_log (card, window_start, window_end, source, widened_from, note)
VALUES (%(card)s, %(start)s, %(end)s, %(source)s, %(widened_from)s, %(note)s)
RETURNING id
