"""The backend: each ``@task`` of an alias that uses it becomes a job type named after the
task's module path, so that the pool, leases, timeouts, retries, cron, the admin and
``quickworker status`` treat tasks exactly as ``@job`` functions.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from django_quickworker.exceptions import InvalidJobData, InvalidJobError, InvalidOption
from django_quickworker.options import (
    JobOptions,
    positive,
    validate_backoff,
    validate_max_attempts,
    validate_queue,
)
from django_quickworker.payload import validate_payload
from django_quickworker.registry import JobType, registry, validate_type_name
from django_quickworker.schedule import Duration, to_timedelta, validate_cron
from django_quickworker.submit import ON_DUPLICATE_TAG, OnDuplicateTag, submit_job
from django_quickworker.tasks.framework import (
    BaseTaskBackend,
    InvalidTask,
    InvalidTaskBackend,
    Task,
    TaskResult,
    normalize_json,
    task_enqueued,
)
from django_quickworker.tasks.results import build_result, chain_from


@dataclass(frozen=True, slots=True, kw_only=True)
class QuickworkerTask(Task):
    """A Task with our options. Django 6.1 and the backport pass ``@task(...)``'s extra
    keyword arguments here; left as None, an option takes the backend's OPTIONS default."""

    timeout: Duration | None = None
    max_attempts: int | None = None
    retry_delay: Duration | None = None
    retry_backoff: str | None = None
    cron: str | None = None
    tag: str | None = None
    on_duplicate_tag: str | None = None


@dataclass(frozen=True)
class TaskOptions:
    """The options a task's rows are written with, worked out once per task."""

    tag: str
    on_duplicate_tag: OnDuplicateTag
    timeout: timedelta | None
    max_attempts: int | None
    retry_delay: timedelta
    retry_backoff: str
    cron: str | None


# The options a task may set, whose backend-wide defaults are OPTIONS keys in capitals.
TASK_OPTIONS = ("timeout", "max_attempts", "retry_delay", "retry_backoff", "on_duplicate_tag")
OPTIONS = (*(name.upper() for name in TASK_OPTIONS), "CRON", "MODULES")


class QuickworkerBackend(BaseTaskBackend):
    """Runs tasks on ``runworkers``, from ``WorkerJob`` rows written in the caller's
    transaction."""

    task_class = QuickworkerTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['OPTIONS'] has the unknown key {unknown[0]!r}; "
                f"the keys are {', '.join(OPTIONS)}."
            )
        self.defaults = {name: self.options.get(name.upper()) for name in TASK_OPTIONS}
        self.cron: dict[str, str] = dict(self.options.get("CRON", {}))
        self.modules: list[str] = list(self.options.get("MODULES", []))
        self.prepared: dict[Any, TaskOptions] = {}  # by task function
        try:  # a mistake in the settings stops the project from starting
            task_options(self.defaults, tag=alias, cron=None)
            for schedule in self.cron.values():
                validate_cron(schedule)
        except InvalidJobError as error:
            raise InvalidTaskBackend(f"TASKS[{alias!r}]['OPTIONS']: {error}") from None

    def validate_task(self, task: Task) -> None:
        """Check ``task`` as the framework does, then register it as a job type."""
        super().validate_task(task)
        if task.func in self.prepared:
            return
        own = {name: getattr(task, name, None) for name in TASK_OPTIONS}
        values = {name: self.defaults[name] if own[name] is None else own[name] for name in own}
        try:
            validate_type_name(task.module_path)
            validate_queue(task.queue_name)
            options = task_options(
                values,
                tag=getattr(task, "tag", None) or task.module_path,
                cron=getattr(task, "cron", None) or self.cron.get(task.module_path),
            )
        except InvalidJobError as error:
            raise InvalidTask(f"Task {task.module_path!r}: {error}") from None
        register(task, options)
        self.prepared[task.func] = options

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Write the row of one run of ``task`` in the caller's transaction."""
        self.validate_task(task)
        options = self.prepared[task.func]
        data = {
            "args": [json_value(value, f"args[{i}]") for i, value in enumerate(args)],
            "kwargs": {
                name: json_value(value, f"kwargs[{name!r}]") for name, value in kwargs.items()
            },
            "backend": self.alias,
        }
        try:
            row = submit_job(
                tag=options.tag,
                type=task.module_path,
                data=data,
                due=task.run_after,
                priority=task.priority,
                queue=task.queue_name,
                timeout=options.timeout,
                max_attempts=options.max_attempts,
                auto_reschedule_on_failure_delay=options.retry_delay,
                retry_backoff=options.retry_backoff,
                on_duplicate_tag=options.on_duplicate_tag,
            )
        except InvalidJobError as error:
            raise InvalidTask(f"Task {task.module_path!r}: {error}") from None
        result = build_result(task, [row], self.alias)
        if row.data is data:  # written now, not a scheduled row that "skip" returned
            task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The result of ``result_id`` as its rows record it now."""
        rows = chain_from(result_id)
        # Imported here: the runner imports this module.
        from django_quickworker.tasks.runner import task_of

        task, backend = task_of(rows[0])
        return build_result(task, rows, backend.alias)


def register(task: Task, options: TaskOptions) -> None:
    """Make ``task`` a job type of the registry, which is all a worker runs."""
    # Imported here: the runner imports this module.
    from django_quickworker.tasks.runner import run_task

    registry.register(
        JobType(
            name=task.module_path,
            function=run_task,
            options=JobOptions(
                queue=task.queue_name,
                priority=task.priority,
                timeout=options.timeout,
                max_attempts=options.max_attempts,
                auto_reschedule_on_failure=(options.max_attempts or 1) > 1,
                auto_reschedule_on_failure_delay=options.retry_delay,
                retry_backoff=options.retry_backoff,
            ),
            cron=options.cron,
        )
    )


def json_value(value: Any, path: str) -> Any:
    """``value`` as JSON will give it back (tuples become lists), or raise InvalidTask
    naming it."""
    try:
        normalized = normalize_json(value)
        validate_payload(normalized, path)
    except (TypeError, ValueError) as error:
        detail = error if isinstance(error, InvalidJobData) else f"{path}={value!r}: {error}"
        raise InvalidTask(
            f"{detail}. Task arguments and return values must survive JSON: str, int, "
            "float, bool, None, lists and dicts (pass ids, not objects)."
        ) from None
    return normalized


def task_options(values: dict[str, Any], tag: str, cron: str | None) -> TaskOptions:
    """Validate ``values`` (TASK_OPTIONS, None where not given); raise an InvalidJobError
    naming a bad one."""
    on_duplicate_tag = values["on_duplicate_tag"] or "allow"
    if on_duplicate_tag not in ON_DUPLICATE_TAG:
        raise InvalidOption(
            f"on_duplicate_tag={on_duplicate_tag!r} is invalid; use one of {ON_DUPLICATE_TAG!r}."
        )
    timeout = values["timeout"]
    return TaskOptions(
        tag=tag,
        on_duplicate_tag=cast(OnDuplicateTag, on_duplicate_tag),
        timeout=None if timeout is None else positive(timeout, "timeout"),
        max_attempts=validate_max_attempts(values["max_attempts"]),
        retry_delay=to_timedelta(values["retry_delay"] or 0, "retry_delay"),
        retry_backoff=validate_backoff(values["retry_backoff"] or "fixed"),
        cron=None if cron is None else validate_cron(cron),
    )
