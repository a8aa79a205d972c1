-- Parcel viewer: the per-parcel, per-year summary the map colours parcels by, and its state.
-- Created by the viewer itself when it first refreshes an AOI-year (cbm_ops.analyst.viewer; idempotent).
-- A derived cache: dropping both tables loses nothing (the next refresh rebuilds them).
CREATE TABLE IF NOT EXISTS {schema}.viewer_parcel_summary (
    year       integer NOT NULL,
    pid        integer NOT NULL,
    s2_obs     integer NOT NULL,      -- canonical S2 observations (datatakes) of the year
    s2_clear   integer NOT NULL,      -- of these, cloud-free by SCL
    last_clear timestamp,             -- sensing time of the last cloud-free one
    PRIMARY KEY (year, pid)
);
CREATE TABLE IF NOT EXISTS {schema}.viewer_summary_state (
    year         integer PRIMARY KEY,
    version      text NOT NULL,       -- cbm_ops.analyst.viewer.results_version when the refresh started
    refreshed_at timestamptz NOT NULL,
    parcels      integer NOT NULL,
    seconds      real NOT NULL
);
