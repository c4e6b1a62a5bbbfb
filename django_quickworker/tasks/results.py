"""Task results, read from the rows: one result per enqueue, across the retries of its chain.

A retry is a new row linked to the failed one by ``rescheduled_from``; the result id is the
id of the chain's first row, its status that of the last, its errors those of every run
that failed.
"""

from typing import Any

from django_quickworker.models import Status, WorkerJob
from django_quickworker.tasks.framework import (
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)

# Our statuses as the framework's; a cancelled run did not succeed, so it reads FAILED.
STATUSES = {
    Status.SCHEDULED: "READY",
    Status.RUNNING: "RUNNING",
    Status.SUCCEEDED: "SUCCESSFUL",
    Status.FAILED: "FAILED",
    Status.CANCELLED: "FAILED",
}
ENDED_BADLY = (Status.FAILED, Status.CANCELLED)


class TaskInterrupted(Exception):
    """A run that ended without an exception of its own: it timed out, an operator
    cancelled it, or its worker died. The error's traceback says which."""


INTERRUPTED = f"{TaskInterrupted.__module__}.{TaskInterrupted.__qualname__}"


def chain_from(result_id: object) -> list[WorkerJob]:
    """The rows of result ``result_id``: its first row, then each retry; or raise
    TaskResultDoesNotExist."""
    if not str(result_id).isdigit():
        raise TaskResultDoesNotExist(result_id)
    first = WorkerJob.objects.filter(pk=int(str(result_id))).first()
    if first is None:
        raise TaskResultDoesNotExist(result_id)
    rows = [first]
    while retry := WorkerJob.objects.filter(rescheduled_from=rows[-1]).order_by("pk").first():
        rows.append(retry)
    return rows


def chain_to(job: WorkerJob) -> list[WorkerJob]:
    """The rows of the result that ``job`` is the latest run of, first row first."""
    rows = [job]
    while rows[0].rescheduled_from_id is not None:  # only retries: the first run reads nothing
        earlier = WorkerJob.objects.filter(pk=rows[0].rescheduled_from_id).first()
        if earlier is None:
            break
        rows.insert(0, earlier)
    return rows


def build_result(task: Task, rows: list[WorkerJob], backend: str) -> TaskResult:
    """The TaskResult that ``rows`` (one chain, first row first) record."""
    first, last = rows[0], rows[-1]
    runs = [row for row in rows if row.started is not None]
    data = first.data if isinstance(first.data, dict) else {}
    result: TaskResult = TaskResult(
        task=task,
        id=str(first.pk),
        status=TaskResultStatus(STATUSES[last.status]),
        enqueued_at=first.created_at,
        started_at=runs[0].started if runs else None,
        finished_at=last.finished,
        last_attempted_at=runs[-1].started if runs else None,
        args=data.get("args", []),
        kwargs=data.get("kwargs", {}),
        backend=backend,
        errors=[error_of(row) for row in rows if row.status in ENDED_BADLY],
        worker_ids=[row.worker for row in runs],
    )
    if last.status == Status.SUCCEEDED:
        set_fields(result, _return_value=last.result)
    return result


def error_of(row: WorkerJob) -> TaskError:
    """The error of a run that failed: the exception's class path and traceback."""
    result: dict[str, Any] = row.result if isinstance(row.result, dict) else {}
    exception = result.get("exception")
    if not exception:
        path = INTERRUPTED
    else:  # the worker names builtin exceptions without their module
        path = exception if "." in exception else f"builtins.{exception}"
    return TaskError(
        exception_class_path=path, traceback=row.error_traceback or result.get("error", "")
    )


def set_fields(result: TaskResult, **fields: Any) -> None:
    """Change fields of ``result``, a frozen dataclass, as the framework's own backends do."""
    for name, value in fields.items():
        object.__setattr__(result, name, value)
