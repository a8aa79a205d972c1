"""Threads per task slot: N extraction tasks on one worker must not oversubscribe its CPUs.

The Numba kernels (``numba.set_num_threads``) and GDAL's decoders (``GDAL_NUM_THREADS``,
JPEG2000) of one extraction task use :func:`threads_per_task` threads:

1. ``CBM_THREADS_PER_TASK`` (environment), else
2. the AOI's ``threads_per_task``, else
3. the CPUs this process may use divided by the Celery worker's concurrency
   (``AIRFLOW__CELERY__WORKER_CONCURRENCY`` or Airflow's ``[celery] worker_concurrency``
   when the executor is Celery), else
4. all CPUs (the CLI, ``airflow dags test``).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def cpus() -> int:
    """CPUs this process may run on (cgroup/affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                # not Linux
        return max(1, os.cpu_count() or 1)


def worker_concurrency() -> int | None:
    """Task slots of the Celery worker running this process, if any."""
    env = os.environ.get("AIRFLOW__CELERY__WORKER_CONCURRENCY")
    if env and env.strip().isdigit():
        return max(1, int(env))
    executor = os.environ.get("AIRFLOW__CORE__EXECUTOR", "")
    if "Celery" not in executor:
        return None
    try:
        from airflow.configuration import conf

        return max(1, conf.getint("celery", "worker_concurrency"))
    except Exception:  # noqa: BLE001 - no Airflow here: no worker either
        return None


def threads_per_task(configured: int | None = None) -> int:
    """Threads one extraction task should use (see the module docstring)."""
    env = os.environ.get("CBM_THREADS_PER_TASK", "").strip()
    if env:
        return max(1, int(env))
    if configured:
        return max(1, configured)
    slots = worker_concurrency()
    return max(1, cpus() // slots) if slots else cpus()


def configure_threads(configured: int | None = None) -> int:
    """Apply :func:`threads_per_task` to Numba and GDAL in this process; returns it."""
    import numba

    n = min(threads_per_task(configured), int(numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    numba.set_num_threads(n)
    os.environ["GDAL_NUM_THREADS"] = str(n)
    try:
        from osgeo import gdal

        gdal.SetConfigOption("GDAL_NUM_THREADS", str(n))
    except ImportError:
        pass
    log.info("extraction threads per task: %d (CPUs %d, worker concurrency %s)", n, cpus(),
             worker_concurrency() or "-")
    return n
