DELETE FROM {schema}.parcel_grid_chunks WHERE grid_id = %(grid_id)s
