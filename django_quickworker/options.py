"""Job options, defined once: how a job is queued, timed out, retried and kept.

``@job`` registers a type's defaults as ``JobOptions``; a submission overrides some of them
(``JobOptions.overridden``); each row stores them in columns of the same names, and a retry
or a cron job's next occurrence copies them from the run before (``JobOptions.of``).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django_quickworker.conf import MAX_INT, conf
from django_quickworker.exceptions import InvalidOption
from django_quickworker.schedule import Duration, to_timedelta

if TYPE_CHECKING:
    from django_quickworker.models import WorkerJob

QUEUE_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 100  # the width of WorkerJob.type and WorkerJob.queue
BACKOFFS = ("fixed", "exponential")


@dataclass(frozen=True)
class JobOptions:
    """A job's options, validated on creation: durations (seconds or ``timedelta``) become
    ``timedelta``, and a bad value raises InvalidOption (or InvalidDuration) naming it."""

    queue: str = "default"
    priority: int = 0  # higher runs first
    timeout: Duration | None = None  # more than zero; None: no timeout
    max_attempts: int | None = None  # None in a type's defaults: decided per submission
    auto_reschedule_on_failure: bool = False
    auto_reschedule_on_failure_delay: Duration = timedelta(0)
    retry_backoff: str = "fixed"
    remove_delay: Duration | None = None  # None: QUICKWORKER's RETAIN_* for its outcome
    persistent: bool = False  # never removed by the cleanup

    def __post_init__(self) -> None:
        normalized = {
            "queue": validate_queue(self.queue),
            "priority": validate_priority(self.priority),
            "timeout": None if self.timeout is None else positive(self.timeout, "timeout"),
            "max_attempts": validate_max_attempts(self.max_attempts),
            "auto_reschedule_on_failure": bool(self.auto_reschedule_on_failure),
            "auto_reschedule_on_failure_delay": to_timedelta(
                self.auto_reschedule_on_failure_delay, "auto_reschedule_on_failure_delay"
            ),
            "retry_backoff": validate_backoff(self.retry_backoff),
            "remove_delay": None
            if self.remove_delay is None
            else to_timedelta(self.remove_delay, "remove_delay"),
            "persistent": bool(self.persistent),
        }
        for name, value in normalized.items():
            object.__setattr__(self, name, value)  # frozen: only creation may set them

    @classmethod
    def of(cls, job: "WorkerJob") -> "JobOptions":
        """The options ``job``'s row was written with."""
        return cls(**{name: getattr(job, name) for name in NAMES})

    def as_fields(self) -> dict[str, Any]:
        """The options as ``WorkerJob`` field values."""
        return {name: getattr(self, name) for name in NAMES}

    def overridden(self, given: Mapping[str, Any]) -> "JobOptions":
        """These options (a type's defaults) with what a submission ``given`` instead (None:
        the default), and its retry policy settled.

        Asking for more than one attempt implies retrying; retrying without a limit gets the
        QUICKWORKER["MAX_ATTEMPTS"] cap, because QuickDapp's unlimited retries never end.
        """
        options = replace(
            self, **{name: value for name, value in given.items() if value is not None}
        )
        attempts = options.max_attempts
        retry = given.get("auto_reschedule_on_failure")
        if retry is None:
            retry = self.auto_reschedule_on_failure or (attempts or 1) > 1
        if retry:
            return replace(
                options, auto_reschedule_on_failure=True, max_attempts=attempts or conf.max_attempts
            )
        asked = given.get("max_attempts")
        if asked is not None and asked > 1:
            raise InvalidOption(
                f"max_attempts={asked!r} needs auto_reschedule_on_failure, which is off; "
                "turn it on or leave max_attempts out."
            )
        return replace(options, auto_reschedule_on_failure=False, max_attempts=1)


NAMES = tuple(field.name for field in fields(JobOptions))


def positive(value: Duration, name: str) -> timedelta:
    """Return ``value`` as a timedelta of more than zero, or raise naming ``name``."""
    duration = to_timedelta(value, name)
    if not duration:
        raise InvalidOption(f"{name}={value!r} must be more than zero.")
    return duration


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


def validate_backoff(backoff: object) -> str:
    """Return ``backoff`` if it names a retry backoff, else raise InvalidOption."""
    if backoff not in BACKOFFS:
        raise InvalidOption(f"retry_backoff={backoff!r} is invalid; use one of {BACKOFFS!r}.")
    return str(backoff)
