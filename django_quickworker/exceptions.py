"""Exceptions raised by django-quickworker."""

from datetime import timedelta


class QuickworkerError(Exception):
    """Base class of django-quickworker's exceptions. Do not raise directly."""


class RetryJob(QuickworkerError):
    """Raise inside a job to have it run again later (within its max_attempts).

    ``delay`` (a timedelta or seconds) overrides the job's backoff for this retry.
    """

    def __init__(self, reason: str = "", *, delay: timedelta | float | None = None) -> None:
        super().__init__(reason or "The job asked to be retried.")
        self.delay = delay


class InvalidJobError(QuickworkerError, ValueError):
    """A job submission or registration was refused; nothing was written."""


class InvalidJobTypeName(InvalidJobError):
    """A job type name is not an identifier-like string."""


class UnknownJobType(InvalidJobError, LookupError):
    """No job function is registered under this type name."""


class InvalidJobData(InvalidJobError):
    """Job data does not survive a round trip through JSON and the database (see payload.py)."""


class InvalidCronSchedule(InvalidJobError):
    """A cron string cannot be parsed."""


class InvalidDuration(InvalidJobError):
    """A delay, timeout or retention is negative, longer than 100 years or not a duration."""


class InvalidDue(InvalidJobError):
    """The due time is naive, out of range (1900 to 9000), or given together with a delay."""


class InvalidUser(InvalidJobError):
    """The user is neither a user, an existing user id nor None."""


class InvalidOption(InvalidJobError):
    """Another submission option (tag, queue, priority, on_duplicate_tag...) is invalid."""


class InvalidMessage(QuickworkerError, ValueError):
    """A live message cannot be sent: too large, or no channel layer is configured."""
