"""The job registry: which functions may run, under which type names, with which defaults.

The registry is the only whitelist: a row whose type is not registered never runs code.
"""

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.core.exceptions import ImproperlyConfigured

from django_quickworker.exceptions import InvalidCronSchedule, InvalidJobTypeName, UnknownJobType
from django_quickworker.options import MAX_NAME_LENGTH, JobOptions
from django_quickworker.schedule import Duration, next_cron_due, validate_cron

JobFunction = TypeVar("JobFunction", bound=Callable[..., Any])

# Identifier-like parts, optionally namespaced with dots: "sendEmail", "billing.send_invoice".
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class JobType:
    """A registered job function and the options its submissions start from."""

    name: str
    function: Callable[..., Any]
    options: JobOptions = field(default_factory=JobOptions)
    cron: str | None = None

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
    options = JobOptions(
        queue=queue,
        priority=priority,
        timeout=timeout,
        max_attempts=max_attempts,
        auto_reschedule_on_failure=auto_reschedule_on_failure,
        auto_reschedule_on_failure_delay=auto_reschedule_on_failure_delay,
        retry_backoff=retry_backoff,
    )
    cron = None if cron is None else validate_cron(cron)
    if cron is not None:
        _refuse_cron_that_never_fires(type_name, cron)

    def register(function: JobFunction) -> JobFunction:
        registry.register(JobType(type_name, function, options, cron))
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
