"""The job registry: which functions may run, under which type names, with which defaults.

The registry is the only whitelist: a row whose type is not registered never runs code.
"""

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.core.exceptions import ImproperlyConfigured

from django_quickworker.conf import MAX_INT
from django_quickworker.exceptions import (
    InvalidCronSchedule,
    InvalidJobTypeName,
    InvalidOption,
    UnknownJobType,
)
from django_quickworker.schedule import Duration, next_cron_due, to_timedelta, validate_cron

JobFunction = TypeVar("JobFunction", bound=Callable[..., Any])

# Identifier-like parts, optionally namespaced with dots: "sendEmail", "billing.send_invoice".
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
QUEUE_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 100  # the width of WorkerJob.type and WorkerJob.queue


@dataclass(frozen=True)
class JobType:
    """A registered job function and the defaults its submissions start from."""

    name: str
    function: Callable[..., Any]
    timeout: timedelta | None = None
    cron: str | None = None
    queue: str = "default"
    priority: int = 0
    max_attempts: int | None = None
    auto_reschedule_on_failure: bool = False
    auto_reschedule_on_failure_delay: timedelta = timedelta(0)
    retry_backoff: str = "fixed"

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    @property
    def path(self) -> str:
        return f"{self.function.__module__}.{self.function.__qualname__}"


class JobRegistry:
    """Job types by name."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(self, job_type: JobType) -> None:
        """Add ``job_type``; refuse a second function under a name already taken."""
        existing = self._types.get(job_type.name)
        # The same function registering again (a module imported twice) is harmless.
        if existing is not None and existing.path != job_type.path:
            raise ImproperlyConfigured(
                f"Job type {job_type.name!r} is registered twice: by {existing.path} "
                f"and by {job_type.path}. Give one of them another name."
            )
        self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType:
        """Return the job type called ``name``, or raise UnknownJobType listing the known ones."""
        try:
            return self._types[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownJobType(
                f"Unknown job type {name!r}; registered types are: {known}."
            ) from None

    def __iter__(self) -> Iterator[JobType]:
        return iter(sorted(self._types.values(), key=lambda job_type: job_type.name))

    def __contains__(self, name: object) -> bool:
        return name in self._types


registry = JobRegistry()

# QuickDapp's convention: the cron job declared by ``@job(name, cron=...)`` runs under this
# tag, which is reserved for it.
CRON_TAG_PREFIX = "cron:"


def cron_tag(job_type: JobType) -> str:
    return CRON_TAG_PREFIX + job_type.name


def declared_cron_job(tag: str) -> JobType | None:
    """The cron job declared in code whose reserved tag is ``tag``, or None."""
    name = tag.removeprefix(CRON_TAG_PREFIX)
    if name == tag or name not in registry:
        return None
    job_type = registry.get(name)
    return job_type if job_type.cron else None


def job(
    type_name: str,
    *,
    timeout: Duration | None = None,
    cron: str | None = None,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int | None = None,
    auto_reschedule_on_failure: bool = False,
    auto_reschedule_on_failure_delay: Duration = 0,
    retry_backoff: str = "fixed",
) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function (sync or ``async def``) as job type ``type_name``."""
    validate_type_name(type_name)
    # Validate now, at import time, so a mistake stops the project from starting.
    timeout_delta = None if timeout is None else to_timedelta(timeout, "timeout")
    if timeout_delta is not None and not timeout_delta:
        raise InvalidOption(f"timeout={timeout!r} must be more than zero.")
    cron = None if cron is None else validate_cron(cron)
    if cron is not None:
        _refuse_cron_that_never_fires(type_name, cron)
    validate_queue(queue)
    validate_priority(priority)
    validate_max_attempts(max_attempts)
    retry_delay = to_timedelta(auto_reschedule_on_failure_delay, "auto_reschedule_on_failure_delay")
    validate_backoff(retry_backoff)

    def register(function: JobFunction) -> JobFunction:
        job_type = JobType(
            name=type_name,
            function=function,
            timeout=timeout_delta,
            cron=cron,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            auto_reschedule_on_failure=bool(auto_reschedule_on_failure),
            auto_reschedule_on_failure_delay=retry_delay,
            retry_backoff=retry_backoff,
        )
        registry.register(job_type)
        return function

    return register


def _refuse_cron_that_never_fires(type_name: str, cron: str) -> None:
    """Refuse at import time a schedule with no date (``"0 0 30 2 *"``): else every
    runworkers would meet it only when it schedules the job."""
    try:
        next_cron_due(cron, datetime.now(dt_timezone.utc), ZoneInfo("UTC"))
    except InvalidCronSchedule as error:
        raise ImproperlyConfigured(f"@job({type_name!r}, cron={cron!r}): {error}") from None


def validate_type_name(name: object) -> str:
    """Return ``name`` if it is an identifier-like type name, else raise InvalidJobTypeName."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.fullmatch(name):
        raise InvalidJobTypeName(
            f"Job type name {name!r} is invalid; use an identifier such as 'sendWelcomeEmail' "
            f"(letters, digits, underscores, dot-separated parts, at most {MAX_NAME_LENGTH} "
            "characters)."
        )
    return name


def validate_queue(queue: object) -> str:
    """Return ``queue`` if it is a usable queue name, else raise InvalidOption."""
    if (
        not isinstance(queue, str)
        or len(queue) > MAX_NAME_LENGTH
        or not QUEUE_PATTERN.fullmatch(queue)
    ):
        raise InvalidOption(
            f"queue={queue!r} is invalid; use letters, digits, '_', '.' or '-' "
            f"(at most {MAX_NAME_LENGTH} characters)."
        )
    return queue


def validate_priority(priority: object) -> int:
    """Return ``priority`` if it is an integer in the column's range, else raise InvalidOption."""
    if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > MAX_INT:
        raise InvalidOption(
            f"priority={priority!r} is invalid; use an integer (higher runs first)."
        )
    return priority


def validate_max_attempts(max_attempts: object) -> int | None:
    """Return ``max_attempts`` if it is None or a positive integer that its column can hold,
    else raise InvalidOption."""
    if max_attempts is not None and (
        not isinstance(max_attempts, int)
        or isinstance(max_attempts, bool)
        or not 1 <= max_attempts <= MAX_INT
    ):
        raise InvalidOption(
            f"max_attempts={max_attempts!r} is invalid; use a positive integer of at most "
            f"{MAX_INT}."
        )
    return max_attempts


BACKOFFS = ("fixed", "exponential")


def validate_backoff(backoff: object) -> str:
    """Return ``backoff`` if it names a retry backoff, else raise InvalidOption."""
    if backoff not in BACKOFFS:
        raise InvalidOption(f"retry_backoff={backoff!r} is invalid; use one of {BACKOFFS!r}.")
    return str(backoff)
