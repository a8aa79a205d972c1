-- migrate-partitions, step 3 (one short transaction): the old sigs becomes the first
-- partition of a partitioned sigs; its primary-key index is attached, not rebuilt.
ALTER TABLE {schema}.sigs RENAME TO {legacy};
ALTER INDEX {schema}.sigs_pkey RENAME TO {legacy_pkey};
ALTER INDEX IF EXISTS {schema}.sigs_pidx RENAME TO {legacy_pidx};
CREATE TABLE {schema}.sigs (
    pid   integer NOT NULL,
    obsid integer NOT NULL,
    band  char(3) NOT NULL,
    count real, mean real, std real, min real, max real, p25 real, p50 real, p75 real,
    CONSTRAINT sigs_pkey PRIMARY KEY (obsid, pid, band)
) PARTITION BY RANGE (obsid);
ALTER TABLE {schema}.sigs ATTACH PARTITION {schema}.{legacy} FOR VALUES FROM (0) TO ({hi});
ALTER TABLE {schema}.{legacy} DROP CONSTRAINT {check}
