-- Does a table have a primary key (a partition needs the parent's unique index)?
SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%(table)s) AND contype = 'p')
