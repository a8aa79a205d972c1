"""Host name of an Airflow component of `make stack` (``[core] hostname_callable``).

The two Celery workers of the one-host stack run on the same machine, but Airflow records
``hostname_callable()`` on every task instance: each worker gets its own name through
``CBM_STACK_HOSTNAME`` so that the UI and the tests tell them apart. Real worker hosts
(docker-compose, several machines) keep Airflow's default ``airflow.utils.net.getfqdn``.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """``CBM_STACK_HOSTNAME`` if set, else the fully qualified host name."""
    return os.environ.get("CBM_STACK_HOSTNAME") or socket.getfqdn()
