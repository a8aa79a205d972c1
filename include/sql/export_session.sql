-- Export: read-only snapshot of the AOI (REPEATABLE READ is set by the caller on the
-- connection), ISO timestamps and shortest exact floats in COPY's CSV.
SELECT set_config('transaction_read_only', 'on', true), set_config('datestyle', 'ISO, YMD', true),
       set_config('extra_float_digits', '1', true)
