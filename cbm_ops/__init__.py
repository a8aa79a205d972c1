"""cbm-airflow: CAP Checks-by-Monitoring parcel extraction (library part, no Airflow needed)."""

from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("cbm-airflow")
except PackageNotFoundError:          # a source checkout on PYTHONPATH, not installed
    __version__ = "0.0.0+source"
