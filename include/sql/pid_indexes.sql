-- Optional indexes on pid (AOI setting pid_indexes: true), as the reference has them
-- (sigs_pidx, hists_pidx; CLUSTER uses them). They speed up queries on sigs/hists by pid
-- that do not join dias_catalogue, at a cost: every COPY maintains them (measured by
-- make bench: about half the write rate). Build them once after a burst backfill.
CREATE INDEX IF NOT EXISTS sigs_pidx ON {schema}.sigs (pid);
CREATE INDEX IF NOT EXISTS hists_pidx ON {schema}.hists (pid);
