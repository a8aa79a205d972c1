-- SCL found no parcel data in the scene: its pending S2 band stages need not run.
UPDATE {schema}.scene_stages
SET status = 'No parcels', updated_at = now()
WHERE obsid = %(obsid)s AND stage = ANY (%(stages)s::text[]) AND status = 'ingested'
