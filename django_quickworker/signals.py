"""Lifecycle signals: the supported way for a project to hook into its jobs.

Each is sent with ``sender=WorkerJob`` in the process where the event happens, and always
with ``send_robust``: a receiver that raises is logged and never changes the job, the
submission or the worker.
"""

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger(__name__)

#: Sent in the submitting process once for each row that ``submit_job`` or ``submit_jobs``
#: writes, right after the INSERT and inside the caller's transaction (receivers wanting
#: the commit use ``transaction.on_commit``). Not sent for a submission that
#: ``on_duplicate_tag="skip"`` answered with the job already scheduled.
#: Kwargs: ``job`` (the saved :class:`~django_quickworker.models.WorkerJob`).
job_submitted = Signal(use_caching=True)

#: Sent in the worker process after the claim, right before the job's function runs.
#: Kwargs: ``job`` (the running WorkerJob: ``worker``, ``attempt`` and ``started`` are set).
job_started = Signal(use_caching=True)

#: Sent in the process that recorded the outcome, after it is written: the worker for a
#: run that returned or raised; runworkers for one it ended (timeout, cancel while
#: running, dead worker) or rescued from a dead host.
#: Kwargs: ``job`` (the finished WorkerJob), ``status`` (``"succeeded"``, ``"failed"`` or
#: ``"cancelled"``), ``result`` (what the function returned, or None unless it succeeded)
#: and ``error`` (the error message, or None if it succeeded).
job_finished = Signal(use_caching=True)

#: Sent in the process that writes a retry's row, inside that transaction: the worker or
#: runworkers for an automatic retry, the web process for the admin's "retry" action.
#: Kwargs: ``job`` (the WorkerJob that failed) and ``retry`` (the new, scheduled WorkerJob).
job_retried = Signal(use_caching=True)


def send(signal: Signal, **kwargs: Any) -> None:
    """Send ``signal`` from WorkerJob to its receivers; log (never raise) what they raise."""
    # Imported here so that projects can import this module before the app registry is ready.
    from django_quickworker.models import WorkerJob

    if not signal.has_listeners(WorkerJob):  # the usual case, and the hot path's: no cost
        return
    for receiver, response in signal.send_robust(sender=WorkerJob, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "receiver %r of a django_quickworker signal raised",
                receiver,
                exc_info=response,
            )
