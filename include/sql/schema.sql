-- cbm-airflow schema, applied idempotently by `python -m cbm_ops init-db` and the DAGs'
-- ensure_schema task. {schema} is the AOI's schema (one schema per AOI and parcel set,
-- as the reference keeps parcels, sigs and hists per country/year schema).
-- Table and column names of the JRC reference (dias_catalogue, aois, sigs, hists) are kept;
-- what the reference lacks is added. The PostGIS extension is created by the DBA or the
-- harness: CREATE EXTENSION needs privileges the pipeline's role should not have.

CREATE SCHEMA IF NOT EXISTS {schema};

-- Scene catalogue: one row per CARD product (reference = product name without ".SAFE").
CREATE TABLE IF NOT EXISTS {schema}.dias_catalogue (
    id          serial PRIMARY KEY,
    obstime     timestamp without time zone NOT NULL,   -- sensing start, UTC
    reference   varchar(120) NOT NULL,
    sensor      char(2) NOT NULL,                       -- 2A 2B 2C 1A 1B 1C
    card        char(2) NOT NULL,                       -- s2 bs c6
    status      varchar(24) NOT NULL DEFAULT 'ingested',
    footprint   geometry(MultiPolygon, 4326)
);
ALTER TABLE {schema}.dias_catalogue
    ADD COLUMN IF NOT EXISTS tile                varchar(5),   -- MGRS tile (S2), e.g. 31UDS
    ADD COLUMN IF NOT EXISTS epsg                integer,      -- UTM EPSG of the product grid
    ADD COLUMN IF NOT EXISTS relative_orbit      smallint,
    ADD COLUMN IF NOT EXISTS orbit_direction     varchar(10),  -- ASCENDING / DESCENDING
    ADD COLUMN IF NOT EXISTS processing_baseline varchar(5),   -- e.g. 05.10 (S2)
    ADD COLUMN IF NOT EXISTS cloud_cover         real,         -- percent, from the catalogue
    ADD COLUMN IF NOT EXISTS product_identifier  text,         -- store path, e.g. /eodata/Sentinel-2/...
    ADD COLUMN IF NOT EXISTS catalogue_id        text,         -- id in the source catalogue
    ADD COLUMN IF NOT EXISTS source              text,         -- catalogue source that harvested it
    ADD COLUMN IF NOT EXISTS harvested_at        timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS boa_add_offset      jsonb;        -- S2 offset applied per band, e.g. B04: -1000
CREATE UNIQUE INDEX IF NOT EXISTS dias_catalogue_reference_idx ON {schema}.dias_catalogue (reference);
CREATE INDEX IF NOT EXISTS dias_catalogue_footprint_idx ON {schema}.dias_catalogue USING gist (footprint);
CREATE INDEX IF NOT EXISTS dias_catalogue_card_obstime_idx ON {schema}.dias_catalogue (card, obstime);

-- Area of interest: the outline to process, normally the parcel set's extent.
CREATE TABLE IF NOT EXISTS {schema}.aois (
    name         text PRIMARY KEY,
    wkb_geometry geometry(MultiPolygon, 4326) NOT NULL
);
ALTER TABLE {schema}.aois
    ADD COLUMN IF NOT EXISTS parcel_table    text,     -- table in this schema (ogc_fid, wkb_geometry)
    ADD COLUMN IF NOT EXISTS parcel_srid     integer,
    ADD COLUMN IF NOT EXISTS parcels_version text,     -- md5 of ids + geometries; invalidates parcel_grids
    ADD COLUMN IF NOT EXISTS updated_at      timestamptz NOT NULL DEFAULT now();

-- Per-parcel, per-band signatures. pid = parcel ogc_fid, obsid = dias_catalogue.id.
-- The key (obsid, pid, band) guarantees one row per parcel, scene and band, serves the
-- per-scene replace, and the per-parcel time series through a join with dias_catalogue
-- (one key probe per scene). No foreign keys: they would slow the bulk COPY. The
-- reference's pid indexes are optional (pid_indexes.sql, AOI setting pid_indexes).
--
-- sigs and hists are partitioned by obsid range (AOI setting partition_obsids, default
-- 500 scenes per partition; cbm_ops/partitions.py creates them on demand and records them
-- in result_partitions). obsid rather than acquisition month: it is already the key's
-- first column (no extra column in hundreds of millions of rows), a scene stage's delete
-- + COPY touches exactly one partition, and new scenes get increasing ids, so old
-- partitions go cold and are vacuumed/clustered once, while extraction writes the newest.
-- An unpartitioned sigs/hists of an earlier version is converted by `cbm migrate-partitions`.
CREATE TABLE IF NOT EXISTS {schema}.sigs (
    pid   integer NOT NULL,
    obsid integer NOT NULL,
    band  char(3) NOT NULL,
    count real, mean real, std real, min real, max real, p25 real, p50 real, p75 real,
    CONSTRAINT sigs_pkey PRIMARY KEY (obsid, pid, band)
) PARTITION BY RANGE (obsid);

-- Sentinel-2 SCL class histogram per parcel and scene, e.g. "4": 95, "9": 12 as JSON.
CREATE TABLE IF NOT EXISTS {schema}.hists (
    pid   integer NOT NULL,
    obsid integer NOT NULL,
    hist  json NOT NULL,
    CONSTRAINT hists_pkey PRIMARY KEY (obsid, pid)
) PARTITION BY RANGE (obsid);

-- The partitions of sigs and hists: obsid range [lo, hi), the two tables, and what
-- maintenance did to them (CLUSTER is skipped for partitions unchanged since).
CREATE TABLE IF NOT EXISTS {schema}.result_partitions (
    lo           integer PRIMARY KEY,
    hi           integer NOT NULL,
    sigs_table   text NOT NULL,
    hists_table  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    clustered_at timestamptz,
    cluster_mods bigint,            -- inserts + deletes of both tables at the last CLUSTER
    CHECK (hi > lo)
);

-- Processing state per scene and stage (scl, s2_10m, s2_20m, bs, c6): the scene queue.
CREATE TABLE IF NOT EXISTS {schema}.scene_stages (
    obsid         integer NOT NULL REFERENCES {schema}.dias_catalogue (id) ON DELETE CASCADE,
    stage         varchar(8) NOT NULL,
    status        varchar(24) NOT NULL DEFAULT 'ingested',
    retryable     boolean NOT NULL DEFAULT true,     -- for error statuses: may cleanup requeue it
    attempts      integer NOT NULL DEFAULT 0,        -- claims so far
    lease_owner   text,
    lease_expires timestamptz,
    last_error    text,
    parcels       integer,                           -- parcels with data (last success)
    rows          integer,                           -- rows written (last success)
    seconds       real,                              -- processing time (last success)
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (obsid, stage)
);
ALTER TABLE {schema}.scene_stages
    -- what produced the stage's rows (last success): package version and git commit,
    -- extraction parameters, product baseline and catalogue source (cbm_ops.extract)
    ADD COLUMN IF NOT EXISTS lineage       jsonb,
    -- quality gate result of the last extraction: checks, measured values, thresholds
    ADD COLUMN IF NOT EXISTS quality       jsonb,
    -- an operator accepted a Quarantined stage (`release`): the next extraction skips the gate
    ADD COLUMN IF NOT EXISTS gate_released boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS scene_stages_stage_status_idx ON {schema}.scene_stages (stage, status);

-- Parcels rasterized on a UTM lattice (EPSG, resolution, origin modulo resolution): the
-- run-length parcel index every worker reads. Stored in chunks (bytea <= 64 MB each).
CREATE TABLE IF NOT EXISTS {schema}.parcel_grids (
    grid_id         serial PRIMARY KEY,
    epsg            integer NOT NULL,
    resolution      double precision NOT NULL,
    origin_x        double precision NOT NULL,   -- lattice origin modulo resolution
    origin_y        double precision NOT NULL,
    all_touched     boolean NOT NULL,
    parcels_version text NOT NULL,
    x0              double precision NOT NULL,   -- upper-left corner of the indexed extent
    y0              double precision NOT NULL,
    width           integer NOT NULL,
    height          integer NOT NULL,
    n_parcels       integer NOT NULL,
    n_runs          bigint NOT NULL,
    seconds         real,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (epsg, resolution, origin_x, origin_y, all_touched)
);
-- Lattices seen on scenes that no stored index serves (Sentinel-1 CARD "Auto UTM" grids):
-- the second scene on a lattice makes it a stored lattice like the Sentinel-2 ones.
CREATE TABLE IF NOT EXISTS {schema}.grid_sightings (
    epsg        integer NOT NULL,
    resolution  double precision NOT NULL,
    origin_x    double precision NOT NULL,
    origin_y    double precision NOT NULL,
    all_touched boolean NOT NULL,
    scenes      integer NOT NULL DEFAULT 0,
    last_obsid  integer,                 -- the bands of one scene count once
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (epsg, resolution, origin_x, origin_y, all_touched)
);
CREATE TABLE IF NOT EXISTS {schema}.parcel_grid_chunks (
    grid_id integer NOT NULL REFERENCES {schema}.parcel_grids (grid_id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    data    bytea NOT NULL,
    PRIMARY KEY (grid_id, seq)
);

-- Schema version of this AOI: ensure_schema skips all DDL above (and its table locks)
-- when the recorded version is current.
-- The version is a hash of the DDL files (cbm_ops.db.SCHEMA_FILES).
CREATE TABLE IF NOT EXISTS {schema}.cbm_schema (
    version    text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE {schema}.cbm_schema ALTER COLUMN version TYPE text;
