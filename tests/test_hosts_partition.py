"""A partition: one host cut off from the database for twice the lease while it runs jobs.

The other host rescues its jobs and runs their retries; when the cut-off host is let back,
it renews before it rescues (nothing: it waits a lease), learns that its runs lost their
leases and stops them (the zombies), and a run that ended while it was cut off records
nothing (the fence). The other host's own rows are untouched.
"""

import time
from datetime import timedelta

import pytest

from demo.hosts import proxy_to
from django_quickworker import submit_job
from django_quickworker.models import Status, WorkerJob, WorkerProcess
from tests.conftest import Runworkers, StartRunworkers, database_url, wait_until
from tests.rig import ready, through
from tests.test_hosts import LEASE, SETTINGS, reached, running_job

pytestmark = [pytest.mark.postgresql, pytest.mark.mysql, pytest.mark.heavy]


def heartbeat_of(runner: Runworkers) -> object:
    return (
        WorkerProcess.objects.filter(name__contains=f":{runner.process.pid}:")
        .values_list("heartbeat", flat=True)
        .get()
    )


def test_a_host_cut_off_for_two_leases_stops_its_zombies_and_records_nothing_late(
    start_runworkers: StartRunworkers,
) -> None:
    with proxy_to(database_url()) as proxy:
        environment = {**SETTINGS, **through(proxy)}
        cut_off = start_runworkers("--workers", "2", "--queues", "work,solo", env=environment)
        ready(cut_off)
        zombie = submit_job(
            tag="zombie",
            type="demo.record",
            queue="work",
            data={"seconds": 30},
            auto_reschedule_on_failure=True,
            max_attempts=2,
        )
        reached(zombie, Status.RUNNING)
        zombie_pid = int(zombie.worker.split(":")[1])
        other = start_runworkers("--workers", "3", "--queues", "work,own", env=SETTINGS)
        ready(other)
        own = running_job("own", 4 * LEASE)
        own_worker = own.worker
        # Ends while its host is cut off: its finish waits for the database, then must not land.
        late = submit_job(tag="late", type="demo.record", queue="solo", data={"seconds": LEASE})
        reached(late, Status.RUNNING)

        proxy.cut()
        time.sleep(2 * LEASE)
        for job in (zombie, late):  # rescued by the other host
            assert reached(job, Status.FAILED).attempt == 1
            assert "stopped renewing its lease" in str(job.result)
        retry = wait_until(  # and the zombie's retry runs there
            lambda: WorkerJob.objects.filter(
                rescheduled_from=zombie, status__in=[Status.RUNNING, Status.SUCCEEDED]
            ).first(),
            what="the zombie's retry to run",
        )
        assert retry.worker.split(":")[2] != zombie.worker.split(":")[2]  # the other host's
        assert psutil_alive(zombie_pid), "the zombie should still run, cut off"
        heartbeat = heartbeat_of(cut_off)
        proxy.restore()

        wait_until(lambda: heartbeat_of(cut_off) != heartbeat, what="the cut-off host's return")
        back = time.monotonic()
        wait_until(lambda: not psutil_alive(zombie_pid), timeout=20, what="the zombie to stop")
        # Within seconds of its return (its first renewal finds the lease lost); the bound
        # leaves room for a busy machine.
        assert time.monotonic() - back < 10
        output = cut_off.output
        assert f"job id={zombie.pk} " in output and "Its lease was lost" in output
        assert f"finish ignored id={late.pk} " in output
        assert "rescuing no other host's jobs" in output
        for job in (zombie, late):  # the late finishes never landed
            job.refresh_from_db()
            assert (job.status, job.attempt) == (Status.FAILED, 1)
        own.refresh_from_db()
        assert (own.status, own.worker, own.attempt) == (Status.RUNNING, own_worker, 1)
        assert own.lease_expires is not None and own.finished is None
        reached(own, Status.SUCCEEDED, 30)
        assert own.finished is not None and own.finished - own.due > timedelta(seconds=LEASE)


def psutil_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
