-- A new pair of partitions [lo, hi) of sigs and hists, attached without blocking writers
-- or readers of the other partitions: ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on the
-- parent (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and wait for every
-- running write and read); the CHECK constraint spares ATTACH the validation scan.
-- {lo} and {hi} are integer literals composed with psycopg.sql.Literal (DDL takes no
-- bound parameters).
CREATE TABLE {schema}.{sigs_part} (LIKE {schema}.sigs INCLUDING DEFAULTS);
ALTER TABLE {schema}.{sigs_part} ADD PRIMARY KEY (obsid, pid, band),
    ADD CONSTRAINT {sigs_check} CHECK (obsid >= {lo} AND obsid < {hi});
ALTER TABLE {schema}.sigs ATTACH PARTITION {schema}.{sigs_part} FOR VALUES FROM ({lo}) TO ({hi});
ALTER TABLE {schema}.{sigs_part} DROP CONSTRAINT {sigs_check};
CREATE TABLE {schema}.{hists_part} (LIKE {schema}.hists INCLUDING DEFAULTS);
ALTER TABLE {schema}.{hists_part} ADD PRIMARY KEY (obsid, pid),
    ADD CONSTRAINT {hists_check} CHECK (obsid >= {lo} AND obsid < {hi});
ALTER TABLE {schema}.hists ATTACH PARTITION {schema}.{hists_part} FOR VALUES FROM ({lo}) TO ({hi});
ALTER TABLE {schema}.{hists_part} DROP CONSTRAINT {hists_check};
INSERT INTO {schema}.result_partitions (lo, hi, sigs_table, hists_table)
VALUES ({lo}, {hi}, {sigs_name}, {hists_name})
