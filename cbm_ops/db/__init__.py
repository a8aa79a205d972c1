"""PostGIS: connections and SQL files, the AOI schema, result partitions, maintenance.

* :mod:`.sql`: the statements of ``include/sql`` (:func:`q`, :func:`q_ddl`) and cursor
  helpers (:func:`one`, :func:`dicts`);
* :mod:`.connection`: database URLs, connections, per-process pools, :func:`transaction`,
  :func:`is_connection_lost`;
* :mod:`.schema`: :func:`ensure_schema` (create/upgrade an AOI schema, versioned);
* :mod:`.partitions`: sigs/hists partitioned by obsid range, the legacy migration;
* :mod:`.maintenance`: cloudy-sigs deletion, VACUUM/CLUSTER, backup;
* :mod:`.devdb`: throwaway PostGIS clusters for tests, the demo and the benchmark.

Every other stage reaches the database through the names re-exported here.
"""

from ..errors import ConfigError
from .connection import connect, db_url_from_env, is_connection_lost, libpq_url, pool, transaction
from .schema import ensure_schema, schema_version
from .sql import SQL_DIR, dicts, one, q, q_ddl

__all__ = ["SQL_DIR", "ConfigError", "connect", "db_url_from_env", "dicts", "ensure_schema", "is_connection_lost",
           "libpq_url", "one", "pool", "q", "q_ddl", "schema_version", "transaction"]
