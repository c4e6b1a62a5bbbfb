"""WorkerProcess rows: each ``runworkers`` parent announces itself and sends heartbeats, so
operators (the admin, ``manage.py quickworker status``) can see who serves the queue."""

import os
import secrets
import socket
from datetime import timedelta

from django.db import router

from django_quickworker import __version__
from django_quickworker.databases import database
from django_quickworker.models import WorkerProcess
from django_quickworker.registry import registry

# Drawn once per runworkers start: host and PID alone repeat (containers with host
# networking, a container restarted in the same start order), and a process must never
# act on the rows of another one that happens to share them.
START_TOKEN = secrets.token_hex(4)


def process_name() -> str:
    """This runworkers parent's name: host:pid:token."""
    return f"{socket.gethostname()}:{os.getpid()}:{START_TOKEN}"


def worker_id(slot: int, token: str, pid: int | None = None) -> str:
    """The name a worker's rows carry: host:pid:token:slot, ``token`` being its runworkers
    parent's START_TOKEN, so that no two workers ever share a name, whatever their hosts
    and PIDs."""
    return f"{socket.gethostname()}:{pid or os.getpid()}:{token}:{slot}"


STALE_AFTER = timedelta(days=1)  # rows of runworkers killed without a goodbye are dropped then


def register(workers: int, queues: list[str] | None) -> None:
    now = database(router.db_for_write(WorkerProcess)).current_time()  # heartbeats: see below
    WorkerProcess.objects.filter(heartbeat__lt=now - STALE_AFTER).delete()
    WorkerProcess.objects.update_or_create(
        name=process_name(),
        defaults={
            "workers": workers,
            "queues": ",".join(queues or []),
            "version": __version__,
            "started": now,
            "heartbeat": now,
            "types": [job_type.name for job_type in registry],
            "crons": declared_crons(),
        },
    )


def declared_crons() -> dict[str, str]:
    """The cron jobs this process's code declares: job type to schedule."""
    return {job_type.name: job_type.cron for job_type in registry if job_type.cron}


def cron_schedules() -> dict[str, str]:
    """The cron jobs that live runworkers declare, each with the schedule of the most
    recently started one that declares it: during a deploy, the new code's.

    This process counts as the newest when it has not registered (a test, a shell).
    """
    schedules: dict[str, str] = {}
    me = process_name()
    registered = False
    for process in WorkerProcess.objects.alive().order_by("started", "name"):
        registered = registered or process.name == me
        schedules.update(process.crons)
    if not registered:
        schedules.update(declared_crons())
    return schedules


def heartbeat() -> None:
    """Write the time on the database's clock: liveness is judged by it, on every host."""
    now = database(router.db_for_write(WorkerProcess)).now()
    WorkerProcess.objects.filter(name=process_name()).update(heartbeat=now)


def unregister() -> None:
    WorkerProcess.objects.filter(name=process_name()).delete()
