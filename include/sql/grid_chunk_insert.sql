INSERT INTO {schema}.parcel_grid_chunks (grid_id, seq, data) VALUES (%(grid_id)s, %(seq)s, %(data)s)
