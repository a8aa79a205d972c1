-- Parcel viewer: what the tiles of an AOI depend on, to key and invalidate their cache: the
-- parcel set (version and last import) and the scene stages (count, last change: every claim,
-- completion, failure, requeue or quarantine updates updated_at). Two small aggregates.
SELECT (SELECT a.parcels_version FROM {schema}.aois a WHERE a.name = %(name)s),
       (SELECT a.updated_at FROM {schema}.aois a WHERE a.name = %(name)s),
       count(*), max(st.updated_at)
FROM {schema}.scene_stages st
