"""cbm-airflow: the AOI files that are invalid, as an Airflow import error naming each file.

The AOI DAG files (cbm_aoi.py, cbm_maintenance.py) build the DAGs of the valid AOI files
only, so one broken file never takes the other AOIs' DAGs down; this file fails to import
with the message of every invalid one, which the UI shows under "DAG Import Errors".
It defines no DAG.
"""

from __future__ import annotations

from cbm_ops.config import ConfigError, load_valid

_errors = load_valid()[1]
if _errors:
    raise ConfigError(f"{len(_errors)} invalid AOI file(s), their DAGs are not built:\n"
                      + "\n".join(_errors.values()))
