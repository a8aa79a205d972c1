-- Analyst API / library reads: the rest of the transaction is read-only and each statement
-- is cut after %(timeout)s (e.g. '10s'), so a client query can neither write nor hold the
-- server (cbm_ops.analyst.read_only).
SELECT set_config('transaction_read_only', 'on', true), set_config('statement_timeout', %(timeout)s, true)
