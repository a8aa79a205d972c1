-- Schema changes need exclusive table locks: give up rather than queue behind (and in
-- front of) running extractions for long.
SET LOCAL lock_timeout = '30s'
