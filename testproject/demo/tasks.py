"""Demo tasks for Django's Tasks framework (``@task``), run by ``runworkers`` through
``django_quickworker.tasks.QuickworkerBackend``; the aliases are in settings.TASKS."""

import asyncio
import time
from typing import Any

from django_quickworker.tasks import report_progress

# A project imports these from django.tasks (Django 6) or django_tasks (the backport on
# 5.2); the demo runs on both, so it takes them from wherever the backend found them.
from django_quickworker.tasks.framework import TaskContext, task


@task
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@task(priority=10, queue_name="other")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return the arguments it was given, as JSON gives them back."""
    return {"args": list(args), "kwargs": kwargs}


@task
def fail(reason: str) -> None:
    """Fail on purpose, to show errors."""
    raise ValueError(f"demo fail: {reason}")


@task
async def async_add(a: int, b: int) -> int:
    """Add two numbers after a pause, as an ``async def`` task."""
    await asyncio.sleep(0.01)
    return a + b


@task(takes_context=True)
def whoami(context: TaskContext) -> dict[str, Any]:
    """Return what the context says about this run."""
    return {"id": context.task_result.id, "attempt": context.attempt}


@task(takes_context=True, backend="retrying")
def fail_until(context: TaskContext, succeed_on: int) -> int:
    """Fail until attempt ``succeed_on``, then return that attempt's number."""
    if context.attempt < succeed_on:
        raise RuntimeError(f"not yet: attempt {context.attempt}")
    return context.attempt


@task(backend="patient")
def fail_once_then_wait(reason: str) -> None:
    """Fail; its alias retries only after an hour, so its result stays READY with an error."""
    raise RuntimeError(reason)


@task(backend="limited")
def sleep(seconds: float) -> float:
    """Sleep ``seconds``; its alias times runs out after one second."""
    time.sleep(seconds)
    return seconds


@task(takes_context=True)
def count_to(context: TaskContext, total: int, user_id: int | None = None) -> int:
    """Count to ``total``, reporting progress (live to ``user_id``'s browser, if given)."""
    for step in range(1, total + 1):
        time.sleep(0.05)
        report_progress(context, step, total, f"step {step} of {total}", user=user_id)
    return total


@task
def noop() -> None:
    """Do nothing: the benchmark measures the queue, not the task."""
