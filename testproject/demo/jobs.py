"""Demo jobs: one that succeeds, one that fails, one that reports progress, one async,
and one that records each run (the tests use it to count executions).

The job context's type arrives with the worker; until then ``ctx`` is typed loosely.
"""

import asyncio
import sys
import time
from typing import Any

from demo.models import Execution
from django_quickworker import job
from django_quickworker.exceptions import RetryJob


@job("demo.add")
def add(ctx: Any) -> dict[str, int]:
    """Add two numbers."""
    return {"sum": ctx.data["a"] + ctx.data["b"]}


@job("demo.fail")
def fail(ctx: Any) -> None:
    """Fail on purpose, to show errors and retries."""
    raise RuntimeError(f"demo.fail failed as asked: {ctx.data.get('reason', 'no reason given')}")


@job("demo.countdown", timeout=300)
def countdown(ctx: Any) -> dict[str, int]:
    """Count down ``steps`` steps of ``interval`` seconds, reporting progress after each."""
    steps = int(ctx.data.get("steps", 5))
    for step in range(1, steps + 1):
        time.sleep(float(ctx.data.get("interval", 0.5)))
        ctx.progress(step, steps, f"step {step} of {steps}")
    return {"steps": steps}


@job("demo.asyncSleep")
async def async_sleep(ctx: Any) -> dict[str, float]:
    """Sleep without blocking, as an ``async def`` job."""
    seconds = float(ctx.data.get("seconds", 1))
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@job("demo.record")
def record(ctx: Any) -> dict[str, int]:
    """Record this run, then sleep ``seconds`` (default 0); with ``exit``, end the process
    with that code instead of returning (as a misbehaving job might)."""
    execution = Execution.objects.create(job_id=ctx.job.pk, worker=ctx.job.worker)
    time.sleep(float(ctx.data.get("seconds", 0)))
    if "exit" in ctx.data:
        sys.exit(ctx.data["exit"])
    return {"execution": execution.pk}


@job("demo.noop")
def noop(ctx: Any) -> None:
    """Do nothing: the benchmark measures the queue, not the job."""


@job("demo.firstLine")
def first_line(ctx: Any) -> float:
    """Return when its first line ran (a UNIX time): where the benchmark's latency ends."""
    return time.time()


# What demo.misbehave returns for each ``data["returns"]``: results no database stores intact.
UNSTORABLE_RESULTS: dict[str, Any] = {
    "huge int": 2**64,
    "nan": float("nan"),
    "lone surrogate": "\ud800",
}


@job("demo.misbehave")
def misbehave(ctx: Any) -> Any:
    """Misbehave as ``data`` asks, for the hardening tests: ``retry_delay`` raises RetryJob
    with that delay; ``returns`` names a result from UNSTORABLE_RESULTS (or ``"deep"``)."""
    if "retry_delay" in ctx.data:
        raise RetryJob("asked to", delay=ctx.data["retry_delay"])
    Execution.objects.create(job_id=ctx.job.pk, worker=ctx.job.worker)
    if ctx.data.get("returns") == "deep":
        deep: list[Any] = []
        for _ in range(5000):  # deeper than Python's recursion limit
            deep = [deep]
        return deep
    return UNSTORABLE_RESULTS.get(ctx.data.get("returns", ""))
