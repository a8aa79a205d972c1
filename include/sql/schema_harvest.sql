-- Harvest log and Sentinel-1 CARD orders (cbm_ops.catalogue, cbm_ops.harvest.ordering). Applied by
-- cbm_ops.db.ensure_schema after schema.sql; idempotent.

-- One row per harvest of one card: its sensing-time window, when it ran, how it ended and
-- what it counted. widened_window() reads the last successful one of a card.
CREATE TABLE IF NOT EXISTS {schema}.harvest_log (
    id            serial PRIMARY KEY,
    card          char(2) NOT NULL,
    window_start  timestamp without time zone NOT NULL,   -- sensing time, UTC
    window_end    timestamp without time zone NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        varchar(10) NOT NULL DEFAULT 'running',  -- running / ok / failed
    source        text,
    pages         integer,
    read          integer,
    inserted      integer,
    existing      integer,
    not_card      integer,
    skipped       integer,                                  -- bad records, reported and skipped
    flagged       integer,                                  -- committed with a corrected field
    error         text,
    widened_from  timestamp without time zone,              -- the run's own start before widening
    note          text
);
CREATE INDEX IF NOT EXISTS harvest_log_card_status_idx ON {schema}.harvest_log (card, status, window_end);

-- Processing orders placed with the DIAS (one row per order request, also refused ones).
CREATE TABLE IF NOT EXISTS {schema}.card_orders (
    id             serial PRIMARY KEY,
    remote_id      text,                                   -- the DIAS order id (none if refused)
    card           char(2) NOT NULL,
    processor      text NOT NULL,
    name           text NOT NULL,
    window_start   timestamp without time zone,
    window_end     timestamp without time zone,
    status         varchar(24) NOT NULL,                   -- submitted / refused / error / the DIAS status
    http_status    integer,
    error          text,
    summary        jsonb,                                  -- last /summary answer
    n_items        integer NOT NULL,
    submitted_at   timestamptz NOT NULL DEFAULT now(),
    polled_at      timestamptz,
    finished_at    timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS card_orders_remote_idx ON {schema}.card_orders (remote_id) WHERE remote_id IS NOT NULL;

-- The source products (GRD for CARD-BS, SLC for CARD-COH6) of each order.
-- identity = mission_start_stop_absorbit_datatake of the source product name: the CARD
-- product made from it carries the same fields (cbm_ops.harvest.ordering.s1_identity).
CREATE TABLE IF NOT EXISTS {schema}.card_order_items (
    order_id        integer NOT NULL REFERENCES {schema}.card_orders (id) ON DELETE CASCADE,
    source_reference varchar(120) NOT NULL,
    card            char(2) NOT NULL,
    identity        varchar(64) NOT NULL,
    obstime         timestamp without time zone NOT NULL,
    status          varchar(24) NOT NULL,   -- ordered / refused / error / queued / processing / downloading / done / failed / cancelled / harvested
    remote_item_id  text,
    processed_name  text,
    extra_info      text,
    obsid           integer,                -- dias_catalogue.id of the harvested CARD product
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, source_reference)
);
CREATE INDEX IF NOT EXISTS card_order_items_identity_idx ON {schema}.card_order_items (card, identity);

-- Live catalogues (issue 16): band hrefs of STAC COG items, the catalogue's modification
-- time (a refreshed record of the same name), the newer product that replaces a
-- republished one (same mission, tile and datatake; newer baseline or generation time),
-- and records served outside the query (counted per harvest).
ALTER TABLE {schema}.dias_catalogue
    ADD COLUMN IF NOT EXISTS assets        jsonb,        -- STAC band hrefs and value conventions (cbm_ops.harvest.assets.asset_map)
    ADD COLUMN IF NOT EXISTS modified_at   timestamp without time zone,   -- OData ModificationDate / STAC updated, UTC
    ADD COLUMN IF NOT EXISTS superseded_by integer;      -- dias_catalogue.id of the republished product
ALTER TABLE {schema}.harvest_log
    ADD COLUMN IF NOT EXISTS filtered integer;          -- served outside the window/AOI/cloud cover, dropped
