"""Running a task inside a worker: the job function behind every task's job type."""

from contextvars import ContextVar
from traceback import format_exc
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone
from django.utils.module_loading import import_string

from django_quickworker.context import JobContext
from django_quickworker.models import WorkerJob
from django_quickworker.tasks.backend import QuickworkerBackend, json_value
from django_quickworker.tasks.framework import (
    InvalidTask,
    InvalidTaskBackend,
    Task,
    TaskContext,
    TaskError,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_finished,
    task_started,
)
from django_quickworker.tasks.results import build_result, chain_to, set_fields

# The run in progress in this worker: its result id and JobContext, for report_progress.
running: ContextVar[tuple[str, JobContext] | None] = ContextVar("running_task", default=None)

# Tasks a worker has resolved, by job type, alias, priority and queue: importing and
# checking them again for every run would cost each run more than a @job's whole call.
# Results are read elsewhere, where a module may be executed anew (tests do), so they resolve.
resolved: dict[tuple[str, str | None, int, str], tuple[Task, QuickworkerBackend]] = {}


def run_task(ctx: JobContext) -> Any:
    """Run the task that ``ctx.job`` is a run of, sending the framework's signals."""
    task, backend = resolved_once(ctx.job)
    result = build_result(task, chain_to(ctx.job), backend.alias)
    sender = type(backend)
    task_started.send(sender, task_result=result)
    data = ctx.job.data if isinstance(ctx.job.data, dict) else {}  # a cron run has no arguments
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    token = running.set((result.id, ctx))
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        value = json_value(value, "return value")
    except Exception as error:  # recorded by the worker's job boundary, which sees it next
        cls = type(error)
        path = f"{cls.__module__}.{cls.__qualname__}"
        result.errors.append(TaskError(exception_class_path=path, traceback=format_exc()))
        set_fields(result, status=TaskResultStatus.FAILED, finished_at=timezone.now())
        task_finished.send(sender, task_result=result)  # in the handler: the log gets exc_info
        raise
    finally:
        running.reset(token)
    set_fields(
        result, status=TaskResultStatus.SUCCESSFUL, finished_at=timezone.now(), _return_value=value
    )
    task_finished.send(sender, task_result=result)
    return value


def resolved_once(job: WorkerJob) -> tuple[Task, QuickworkerBackend]:
    """``resolve_task``, kept for the rows after: a worker's tasks do not change while it runs."""
    key = identity(job)
    if key not in resolved:  # only a resolution that passed the checks is kept
        resolved[key] = _resolve(*key)
    return resolved[key]


def resolve_task(job: WorkerJob) -> tuple[Task, QuickworkerBackend]:
    """The task ``job`` runs, and the backend it was enqueued on; raise InvalidTask unless
    its type names a Task of an alias that uses this backend."""
    return _resolve(*identity(job))


def identity(job: WorkerJob) -> tuple[str, str | None, int, str]:
    """What names the task of ``job``: its path, alias (if the row says), priority, queue."""
    data = job.data if isinstance(job.data, dict) else {}  # a cron run has no arguments
    return job.type, data.get("backend"), job.priority, job.queue


def _resolve(
    path: str, alias: str | None, priority: int, queue: str
) -> tuple[Task, QuickworkerBackend]:
    try:
        task = import_string(path)
    except ImportError:
        task = None
    if not isinstance(task, Task):
        raise InvalidTask(f"{path!r} does not name a Task.")
    alias = alias or task.backend
    try:
        backend = task_backends[alias]
    except InvalidTaskBackend:
        backend = None
    if not isinstance(backend, QuickworkerBackend):
        raise InvalidTask(f"Task {path!r}: backend {alias!r} is not a QuickworkerBackend.")
    if (task.backend, task.priority, task.queue_name) != (alias, priority, queue):
        task = task.using(backend=alias, priority=priority, queue_name=queue)
    return task, backend


@receiver(setting_changed)
def forget_resolved(*, setting: str, **kwargs: Any) -> None:
    """Resolve again under new TASKS (tests override them): an alias may name another backend."""
    if setting == "TASKS":
        resolved.clear()


def task_of(job: WorkerJob) -> tuple[Task, QuickworkerBackend]:
    """``resolve_task`` for results: a row that is not a task's has no result."""
    try:
        return resolve_task(job)
    except InvalidTask:
        raise TaskResultDoesNotExist(str(job.pk)) from None


def report_progress(
    context: TaskContext,
    current: float,
    total: float | None = None,
    message: str = "",
    *,
    user: Any = None,
) -> None:
    """Report how far the running task has got: stored on its row (the admin and
    ``quickworker status`` show it) and sent live to ``user``'s browser, if given.

    Call it as often as you like; writes and messages are throttled.
    """
    run = running.get()
    if run is None or run[0] != context.task_result.id:
        raise InvalidTask(
            f"context={context!r} is not the context of the task this worker is running; "
            "pass the context your task received (@task(takes_context=True))."
        )
    job_context = run[1]
    if user is not None:
        # The owner of a task is whoever it names: its messages (this one and the
        # finish) go there, as a job's go to the user it was submitted for.
        job_context.job.user_id = getattr(user, "pk", user)
    job_context.progress(current, total, message)
