"""The Tasks framework backend in the caller's process: enqueueing, validation, options,
and results read from rows (runs by real workers are in test_tasks_runworkers.py)."""

import inspect
import sys
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from demo import tasks
from django_quickworker import submit_job
from django_quickworker.context import JobContext
from django_quickworker.cron import ensure_cron_jobs
from django_quickworker.models import Status, WorkerJob
from django_quickworker.registry import JobRegistry, registry
from django_quickworker.tasks import QuickworkerBackend, QuickworkerTask, discover_tasks
from django_quickworker.tasks.framework import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    task,
    task_backends,
    task_enqueued,
)
from django_quickworker.tasks.results import INTERRUPTED
from django_quickworker.tasks.runner import run_task
from tests.test_submit import _mark, _next_payloads

pytestmark = pytest.mark.django_db


def test_the_backend_supports_everything_the_framework_asks_about() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, QuickworkerBackend)
    assert (backend.supports_defer, backend.supports_async_task) == (True, True)
    assert (backend.supports_get_result, backend.supports_priority) == (True, True)


def test_every_task_is_a_job_type_named_after_its_module_path() -> None:
    assert isinstance(tasks.add, QuickworkerTask)
    job_type = registry.get("demo.tasks.add")
    options = job_type.options
    assert (options.queue, options.priority, options.timeout) == ("default", 0, None)
    assert registry.get("demo.tasks.echo").options.priority == 10
    assert registry.get("demo.tasks.sleep").options.timeout == timedelta(seconds=1)


def test_enqueue_writes_one_row_and_returns_a_ready_result() -> None:
    result = tasks.add.enqueue(2, b=3)
    row = WorkerJob.objects.get()
    assert result.id == str(row.pk)
    assert (row.type, row.tag, row.queue, row.priority) == ("demo.tasks.add",) * 2 + ("default", 0)
    assert row.data == {"args": [2], "kwargs": {"b": 3}, "backend": "default"}
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs, result.backend) == ([2], {"b": 3}, "default")
    assert result.enqueued_at == row.created_at
    assert (result.started_at, result.finished_at, result.last_attempted_at) == (None,) * 3
    assert (result.errors, result.worker_ids, result.attempts) == ([], [], 0)
    with pytest.raises(ValueError, match="not finished"):
        result.return_value  # noqa: B018


def test_priority_queue_and_run_after_reach_the_row() -> None:
    later = timezone.now() + timedelta(hours=1)
    result = tasks.echo.using(priority=-100, run_after=later).enqueue("x")
    row = WorkerJob.objects.get(pk=result.id)
    assert (row.priority, row.queue, row.due) == (-100, "other", later)
    assert tasks.echo.enqueue().task.priority == 10


def test_tuples_come_back_as_lists_as_json_gives_them() -> None:
    result = tasks.echo.enqueue((1, 2), nested={"pair": (3, 4)})
    assert WorkerJob.objects.get(pk=result.id).data["args"] == [[1, 2]]
    assert result.kwargs == {"nested": {"pair": [3, 4]}}


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((datetime(2026, 1, 1),), {}, "args[0]=datetime.datetime(2026, 1, 1, 0, 0)"),
        ((1,), {"when": {1, 2}}, "kwargs['when']={1, 2}"),
        ((float("nan"),), {}, "args[0] is nan"),
        (({"key": object},), {}, "args[0]={'key': <class 'object'>}"),
        (({1: "int key"},), {}, "args[0] has the key 1"),
    ],
)
def test_arguments_that_do_not_survive_json_are_refused_naming_them(
    args: tuple[Any, ...], kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidTask) as refused:
        tasks.echo.enqueue(*args, **kwargs)
    assert named in str(refused.value)
    assert not WorkerJob.objects.exists()


def test_the_frameworks_own_checks_refuse_bad_tasks_before_anything_is_written() -> None:
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=101)
    with pytest.raises(InvalidTask, match="aware"):
        tasks.add.using(run_after=datetime(2030, 1, 1))
    with pytest.raises(InvalidTask, match="'nowhere'"):
        tasks.add.using(queue_name="nowhere")
    assert not WorkerJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_leaves_no_row() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        assert WorkerJob.objects.filter(pk=result.id).exists()
        raise RuntimeError("roll back")
    assert not WorkerJob.objects.exists()


@pytest.mark.postgresql  # NOTIFY: MySQL has none (its wake-up is the parent's poll)
@pytest.mark.django_db(transaction=True)
def test_workers_are_woken_when_the_transaction_commits(listener: psycopg.Connection[Any]) -> None:
    with transaction.atomic():
        tasks.echo.enqueue()
        _mark(listener, "before-commit")
        assert _next_payloads(listener, 1) == ["before-commit"]
    assert _next_payloads(listener, 1) == ["other"]


def test_task_enqueued_is_sent_with_the_result() -> None:
    received: list[tuple[Any, Any]] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        received.append((sender, task_result))

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert received == [(QuickworkerBackend, result)]


def test_aenqueue_and_aget_result_work_from_async_code() -> None:
    result = async_to_sync(tasks.add.aenqueue)(4, 5)
    fetched = async_to_sync(tasks.add.aget_result)(result.id)
    assert (fetched.id, fetched.args, fetched.status) == (result.id, [4, 5], "READY")


def test_unknown_result_ids_do_not_exist() -> None:
    job_row = submit_job(tag="plain", type="demo.add")
    for result_id in ("999999", "not-a-number", str(job_row.pk)):
        with pytest.raises(TaskResultDoesNotExist):
            task_backends["default"].get_result(result_id)


def test_a_task_reads_only_its_own_results() -> None:
    result = tasks.echo.enqueue()
    assert tasks.echo.get_result(result.id).task.func is tasks.echo.func
    with pytest.raises(TaskResultMismatch, match=r"demo\.tasks\.echo"):
        tasks.add.get_result(result.id)


def test_the_admin_lists_and_filters_tasks_by_their_module_path(admin_client: Client) -> None:
    result = tasks.add.enqueue(1, 2)
    submit_job(tag="plain", type="demo.add")
    page = admin_client.get("/admin/quickworker/workerjob/", {"type": "demo.tasks.add"})
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [WorkerJob.objects.get(pk=result.id)]
    detail = admin_client.get(f"/admin/quickworker/workerjob/{result.id}/change/")
    assert "demo.tasks.add" in detail.content.decode()


def _finish(row: WorkerJob, status: str, **fields: Any) -> None:
    now = timezone.now()
    WorkerJob.objects.filter(pk=row.pk).update(
        status=status, started=now, finished=now, success=status == Status.SUCCEEDED, **fields
    )


def test_a_cancelled_row_reads_failed_with_the_reason() -> None:
    result = tasks.add.enqueue(1, 2)
    WorkerJob.objects.filter(pk=result.id).cancel("changed my mind")
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert [(e.exception_class_path, e.traceback) for e in result.errors] == [
        (INTERRUPTED, "changed my mind")
    ]
    assert result.errors[0].exception_class.__name__ == "TaskInterrupted"


def test_a_retry_chain_is_one_result_ready_with_the_earlier_error() -> None:
    result = tasks.add.enqueue(1, 2)
    first = WorkerJob.objects.get(pk=result.id)
    traceback = "Traceback (most recent call last):\nValueError: boom\n"
    _finish(
        first,
        Status.FAILED,
        worker="host:1:0",
        result={"error": "boom", "exception": "ValueError"},
        error_traceback=traceback,
    )
    retry = WorkerJob.objects.create(
        tag=first.tag, type=first.type, data=first.data, due=timezone.now(), rescheduled_from=first
    )
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert [(e.exception_class, e.traceback) for e in result.errors] == [(ValueError, traceback)]
    assert result.worker_ids == ["host:1:0"]
    _finish(retry, Status.SUCCEEDED, worker="host:2:0", result=3)
    fetched = tasks.add.get_result(result.id)
    assert (fetched.status, fetched.return_value) == (TaskResultStatus.SUCCESSFUL, 3)
    assert (fetched.worker_ids, fetched.attempts, len(fetched.errors)) == (
        ["host:1:0", "host:2:0"],
        2,
        1,
    )
    assert fetched.started_at == WorkerJob.objects.get(pk=first.pk).started
    assert fetched.last_attempted_at == WorkerJob.objects.get(pk=retry.pk).started


def test_alias_options_become_the_rows_retry_policy_and_timeout() -> None:
    retrying = WorkerJob.objects.get(pk=tasks.fail_until.enqueue(2).id)
    assert (retrying.auto_reschedule_on_failure, retrying.max_attempts) == (True, 3)
    patient = WorkerJob.objects.get(pk=tasks.fail_once_then_wait.enqueue("x").id)
    assert patient.auto_reschedule_on_failure_delay == timedelta(hours=1)
    limited = WorkerJob.objects.get(pk=tasks.sleep.enqueue(0).id)
    assert (limited.timeout, limited.auto_reschedule_on_failure) == (timedelta(seconds=1), False)


def options_task() -> None:
    """A task function for the option tests, defined at module level as tasks must be."""


BACKEND = "django_quickworker.tasks.QuickworkerBackend"


@pytest.fixture
def options_backend(job_registry: JobRegistry) -> Any:
    """Settings with an alias "opts" whose OPTIONS the test gives."""

    def configure(options: dict[str, Any]) -> Any:
        tasks_setting = {
            "default": {"BACKEND": BACKEND},
            "opts": {"BACKEND": BACKEND, "OPTIONS": options},
        }
        return override_settings(TASKS=tasks_setting)

    return configure


def test_per_task_options_override_the_alias_defaults(options_backend: Any) -> None:
    with options_backend({"MAX_ATTEMPTS": 2, "RETRY_BACKOFF": "exponential", "TIMEOUT": 60}):
        defined = QuickworkerTask(
            func=options_task,
            backend="opts",
            priority=0,
            queue_name="default",
            run_after=None,
            timeout=5,
            tag="only-one",
            on_duplicate_tag="skip",
        )
        first = defined.enqueue()
        again = defined.enqueue()
    row = WorkerJob.objects.get()
    assert again.id == first.id  # "skip" returned the scheduled row
    assert (row.tag, row.timeout, row.max_attempts, row.retry_backoff) == (
        "only-one",
        timedelta(seconds=5),
        2,
        "exponential",
    )


def test_a_cron_task_declares_its_chain_like_a_cron_job(options_backend: Any) -> None:
    with options_backend({"CRON": {"tests.test_tasks.options_task": "@daily"}}):
        task(backend="opts")(options_task)
        ensure_cron_jobs()
    row = WorkerJob.objects.get(tag="cron:tests.test_tasks.options_task")
    assert (row.type, row.cron_schedule) == ("tests.test_tasks.options_task", "@daily")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"RETRIES": 3}, "unknown key 'RETRIES'"),
        ({"TIMEOUT": -1}, "timeout=-1"),
        ({"RETRY_BACKOFF": "linear"}, "retry_backoff='linear'"),
        ({"ON_DUPLICATE_TAG": "merge"}, "on_duplicate_tag='merge'"),
        ({"CRON": {"x.y": "every day"}}, "cron='every day'"),
    ],
)
def test_bad_options_stop_the_backend_naming_them(
    options_backend: Any, options: dict[str, Any], message: str
) -> None:
    with options_backend(options), pytest.raises(InvalidTaskBackend, match=message):
        task_backends["opts"]


def test_bad_per_task_options_are_refused_naming_them(options_backend: Any) -> None:
    with options_backend({}), pytest.raises(InvalidTask, match="max_attempts=0"):
        QuickworkerTask(
            func=options_task,
            backend="opts",
            priority=0,
            queue_name="default",
            run_after=None,
            max_attempts=0,
        )


def test_the_worker_runs_only_tasks_of_aliases_that_use_this_backend(options_backend: Any) -> None:
    row = WorkerJob(type="demo.jobs.add", data={}, priority=0, queue="default")
    with pytest.raises(InvalidTask, match=r"'demo\.jobs\.add' does not name a Task"):
        run_task(JobContext(row))  # a function, not a Task: never called
    row.type, row.data = "demo.tasks.add", {"backend": "elsewhere"}
    with (
        override_settings(
            TASKS={
                "default": {"BACKEND": BACKEND},
                "elsewhere": {
                    "BACKEND": f"{type(task_backends).__module__}.backends.dummy.DummyBackend"
                },
            }
        ),
        pytest.raises(InvalidTask, match="'elsewhere' is not a QuickworkerBackend"),
    ):
        run_task(JobContext(row))


# Django 6.1 and the backport pass @task's extra keyword arguments to the task class.
FORWARDS_OPTIONS = any(
    parameter.kind is inspect.Parameter.VAR_KEYWORD
    for parameter in inspect.signature(task).parameters.values()
)
task_with_options: Any = task  # django-stubs describe Django 6.0's @task, without them


def test_task_takes_our_options_where_the_framework_forwards_them(options_backend: Any) -> None:
    with options_backend({}):
        if not FORWARDS_OPTIONS:  # Django 6.0: aliases and OPTIONS instead (docs/tasks.rst)
            with pytest.raises(TypeError, match="timeout"):
                task_with_options(backend="opts", timeout=5)(options_task)
            return
        defined = task_with_options(
            backend="opts", timeout=5, max_attempts=3, retry_backoff="exponential"
        )(options_task)
        row = WorkerJob.objects.get(pk=defined.enqueue().id)
    assert (row.timeout, row.max_attempts, row.retry_backoff) == (
        timedelta(seconds=5),
        3,
        "exponential",
    )


def test_workers_import_the_modules_options_name(
    options_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "tests.test_tasks_runworkers"
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.delitem(registry._types, f"{module}.undiscovered", raising=False)
    with options_backend({"MODULES": [module]}):
        discover_tasks()
    assert module in sys.modules
    assert f"{module}.undiscovered" in registry
