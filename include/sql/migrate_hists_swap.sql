-- migrate-partitions, step 3 for hists (same transaction as sigs).
ALTER TABLE {schema}.hists RENAME TO {legacy};
ALTER INDEX {schema}.hists_pkey RENAME TO {legacy_pkey};
ALTER INDEX IF EXISTS {schema}.hists_pidx RENAME TO {legacy_pidx};
CREATE TABLE {schema}.hists (
    pid   integer NOT NULL,
    obsid integer NOT NULL,
    hist  json NOT NULL,
    CONSTRAINT hists_pkey PRIMARY KEY (obsid, pid)
) PARTITION BY RANGE (obsid);
ALTER TABLE {schema}.hists ATTACH PARTITION {schema}.{legacy} FOR VALUES FROM (0) TO ({hi});
ALTER TABLE {schema}.{legacy} DROP CONSTRAINT {check}
