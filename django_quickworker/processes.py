"""WorkerProcess rows: each ``runworkers`` parent announces itself and sends heartbeats, so
operators (the admin, ``manage.py quickworker status``) can see who serves the queue."""

import os
import socket
from datetime import timedelta

from django.utils import timezone

from django_quickworker import __version__
from django_quickworker.models import WorkerProcess


def process_name() -> str:
    """This runworkers parent's name: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


STALE_AFTER = timedelta(days=1)  # rows of runworkers killed without a goodbye are dropped then


def register(workers: int, queues: list[str] | None) -> None:
    now = timezone.now()
    WorkerProcess.objects.filter(heartbeat__lt=now - STALE_AFTER).delete()
    WorkerProcess.objects.update_or_create(
        name=process_name(),
        defaults={
            "workers": workers,
            "queues": ",".join(queues or []),
            "version": __version__,
            "started": now,
            "heartbeat": now,
        },
    )


def heartbeat() -> None:
    WorkerProcess.objects.filter(name=process_name()).update(heartbeat=timezone.now())


def unregister() -> None:
    WorkerProcess.objects.filter(name=process_name()).delete()
