"""Submitting jobs: validate everything, then write rows in the caller's transaction."""

import functools
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models, router, transaction
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init
from django.utils import timezone

from django_quickworker.conf import conf
from django_quickworker.databases import database
from django_quickworker.exceptions import InvalidDue, InvalidOption, InvalidUser
from django_quickworker.models import WorkerJob
from django_quickworker.options import JobOptions
from django_quickworker.payload import is_storable_text, validate_payload
from django_quickworker.registry import declared_cron_job, registry
from django_quickworker.schedule import (
    Duration,
    check_due,
    next_cron_due,
    to_timedelta,
    validate_cron,
)
from django_quickworker.signals import job_retried, job_submitted, send
from django_quickworker.tracing import current_trace_context

OnDuplicateTag = Literal["replace", "skip", "allow"]
ON_DUPLICATE_TAG = ("replace", "skip", "allow")
CANCELLED_BY_NEW_JOB = "Job cancelled due to new job being created"  # QuickDapp's wording
# A submission's optional parts that are not job options (JobOptions): its owner, data, time.
NOT_OPTIONS = ("user", "data", "due", "delay", "cron")


def submit_job(
    *,
    tag: str,
    type: str,
    user: Any = None,
    data: Any = None,
    due: datetime | None = None,
    delay: Duration | None = None,
    cron: str | None = None,
    auto_reschedule_on_failure: bool | None = None,
    auto_reschedule_on_failure_delay: Duration | None = None,
    retry_backoff: str | None = None,
    max_attempts: int | None = None,
    timeout: Duration | None = None,
    remove_delay: Duration | None = None,
    persistent: bool = False,
    priority: int | None = None,
    queue: str | None = None,
    on_duplicate_tag: OnDuplicateTag = "replace",
) -> WorkerJob:
    """Validate a job and write it in the caller's transaction; return the saved row.

    Options left as None take the job type's registered default. With
    ``on_duplicate_tag="replace"`` (QuickDapp's behaviour) scheduled jobs with the same tag
    are cancelled; ``"skip"`` returns the scheduled job instead of writing a new one;
    ``"allow"`` keeps both. Workers are woken when the transaction commits.
    """
    submission = {
        "tag": tag,
        "type": type,
        "user": user,
        "data": data,
        "due": due,
        "delay": delay,
        "cron": cron,
        "queue": queue,
        "priority": priority,
        "timeout": timeout,
        "max_attempts": max_attempts,
        "auto_reschedule_on_failure": auto_reschedule_on_failure,
        "auto_reschedule_on_failure_delay": auto_reschedule_on_failure_delay,
        "retry_backoff": retry_backoff,
        "remove_delay": remove_delay,
        "persistent": persistent,
    }
    return submit_jobs([submission], on_duplicate_tag=on_duplicate_tag)[0]


def submit_jobs(
    submissions: Iterable[Mapping[str, Any]], *, on_duplicate_tag: OnDuplicateTag = "replace"
) -> list[WorkerJob]:
    """Submit many jobs (each a dict of ``submit_job`` options) with one INSERT.

    All are validated before anything is written. Returns the rows in submission order;
    with ``on_duplicate_tag="skip"`` a skipped submission returns the job already scheduled.
    """
    if on_duplicate_tag not in ON_DUPLICATE_TAG:
        raise InvalidOption(
            f"on_duplicate_tag={on_duplicate_tag!r} is invalid; use one of {ON_DUPLICATE_TAG!r}."
        )
    now = timezone.now()
    jobs = [build_job(submission, now) for submission in submissions]
    for job in jobs:
        _refuse_reserved_tag(job.tag)
    tags = [job.tag for job in jobs]
    if on_duplicate_tag != "allow" and len(set(tags)) != len(tags):
        repeated = sorted({tag for tag in tags if tags.count(tag) > 1})
        raise InvalidOption(
            f"Tags {repeated!r} appear more than once in one submission with "
            f"on_duplicate_tag={on_duplicate_tag!r}; submit them separately or use 'allow'."
        )
    alias = router.db_for_write(WorkerJob)
    _check_users_exist(jobs, alias)
    if on_duplicate_tag != "skip":
        # "replace" cancels what it replaces in the same database call as the INSERT where
        # the database can: the submission's few round trips are most of what it costs.
        replacing = tags if on_duplicate_tag == "replace" else []
        database(alias).insert_jobs(jobs, replacing, CANCELLED_BY_NEW_JOB)
        return _announce(jobs)
    with transaction.atomic(using=alias, savepoint=False):
        lock_tags(tags, alias)
        scheduled = WorkerJob.objects.using(alias).scheduled().filter(tag__in=tags)
        existing = {job.tag: job for job in scheduled}
        _announce(insert([job for job in jobs if job.tag not in existing], alias))
        return [existing.get(job.tag, job) for job in jobs]


def _announce(written: list[WorkerJob]) -> list[WorkerJob]:
    """Send ``job_submitted`` for each row just written; return them."""
    for job in written:
        send(job_submitted, job=job)
    return written


def build_job(submission: Mapping[str, Any], now: datetime) -> WorkerJob:
    """Return an unsaved, fully validated WorkerJob; raise an InvalidJobError if anything is off.

    ``submission`` holds ``submit_job``'s arguments but ``on_duplicate_tag``: ``tag`` and
    ``type``, maybe ``user``, ``data``, ``due``, ``delay`` and ``cron``, and ``JobOptions``
    fields, of which those left out or None take the type's default.
    """
    options = dict(submission)
    tag, type = _required(options, "tag"), _required(options, "type")
    user, data, due, delay, cron = (options.pop(name, None) for name in NOT_OPTIONS)
    job_type = registry.get(type)
    validate_payload(data, "data")
    cron_schedule = validate_cron(cron) if cron is not None else ""
    job = new_job(
        {
            "tag": _validate_tag(tag),
            "type": job_type.name,
            "user_id": _user_id(user),
            "data": {} if data is None else data,
            "due": _due(now, due, delay, cron_schedule),
            "cron_schedule": cron_schedule,
            "trace_context": current_trace_context(),
            **settled_options(job_type.options, options).as_fields(),
        }
    )
    if isinstance(user, models.Model):
        job.user = user  # type: ignore[assignment]  # cached: no query for a user we hold
    return job


def _required(submission: dict[str, Any], name: str) -> Any:
    if name not in submission:
        raise InvalidOption(f"A submission needs a {name!r}; it has {sorted(submission)!r}.")
    return submission.pop(name)


def new_job(values: dict[str, Any]) -> WorkerJob:
    """An unsaved WorkerJob of ``values`` (by attname), its other fields at their defaults.

    Its attributes are filled in as ``Model.__init__`` fills in a row it is given by position
    (by keyword costs several times more), without the call: that is half of what building a
    job costs, and a bulk submission builds thousands. Only when something receives the
    ``pre_init`` or ``post_init`` signals of WorkerJob does the model build it, sending them.
    """
    positions, blank, made = _blank_row()
    row = blank.copy()
    for position, default in made:
        row[position] = default()
    for name, value in values.items():
        if name not in positions:
            raise TypeError(f"WorkerJob has no field {name!r}.")
        row[positions[name]] = value
    if pre_init.has_listeners(WorkerJob) or post_init.has_listeners(WorkerJob):
        return WorkerJob(*row)
    job = WorkerJob.__new__(WorkerJob)
    job._state = ModelState()
    job.__dict__.update(zip(positions, row, strict=True))  # positions: in the fields' order
    return job


@functools.cache
def _blank_row() -> tuple[dict[str, int], list[Any], list[tuple[int, Callable[[], Any]]]]:
    """Each field's position by attname, a row of the defaults that are values, and the
    defaults made afresh for every row (such as ``dict``), by position."""
    fields = WorkerJob._meta.concrete_fields
    made = {n: f.default for n, f in enumerate(fields) if f.has_default() and callable(f.default)}
    blank = [None if n in made else f.get_default() for n, f in enumerate(fields)]
    return {f.attname: n for n, f in enumerate(fields)}, blank, list(made.items())


def settled_options(defaults: JobOptions, given: Mapping[str, Any]) -> JobOptions:
    """``defaults.overridden(given)``, worked out once for each distinct ``given``: the
    submissions of a bulk usually repeat the same few."""
    # Keyed by each value's type too (True == 1), and by the setting overridden() reads.
    try:
        key = tuple((name, value.__class__, value) for name, value in given.items())
        return _settled(defaults, key, conf.max_attempts)
    except TypeError:  # an unhashable value, which overridden() refuses with its reason
        return defaults.overridden(given)


@functools.lru_cache(maxsize=256)
def _settled(
    defaults: JobOptions, given: tuple[tuple[str, type, Any], ...], max_attempts: int
) -> JobOptions:
    # max_attempts is only part of the key: overridden() reads the setting itself.
    return defaults.overridden({name: value for name, _, value in given})


def _refuse_reserved_tag(tag: str) -> None:
    """Refuse the tag of a cron job declared in code: a submission with it would cancel
    that job's pending row (on_duplicate_tag="replace") or fork its chain."""
    job_type = declared_cron_job(tag)
    if job_type is not None:
        raise InvalidOption(
            f"tag={tag!r} is reserved for the cron job declared in code by "
            f"@job({job_type.name!r}, cron={job_type.cron!r}); use another tag."
        )


def _validate_tag(tag: object) -> str:
    if not isinstance(tag, str) or not tag or len(tag) > 255 or not is_storable_text(tag):
        raise InvalidOption(
            f"tag={tag!r} is invalid; use a non-empty string of at most 255 characters."
        )
    return tag


def _due(now: datetime, due: datetime | None, delay: Duration | None, cron: str) -> datetime:
    """When the job becomes claimable: ``due``, now + ``delay``, the next cron tick, or now."""
    if due is not None and delay is not None:
        raise InvalidDue(f"due={due!r} and delay={delay!r} were both given; give one of them.")
    if delay is not None:
        return now + to_timedelta(delay, "delay")
    if due is None:
        return next_tick(cron, now) if cron else now
    if not isinstance(due, datetime):
        raise InvalidDue(f"due={due!r} is not a datetime.")
    if settings.USE_TZ and timezone.is_naive(due):
        raise InvalidDue(
            f"due={due!r} is a naive datetime while USE_TZ is on; give an aware datetime "
            "(e.g. timezone.now() + timedelta(...))."
        )
    if not settings.USE_TZ and timezone.is_aware(due):
        raise InvalidDue(f"due={due!r} is an aware datetime while USE_TZ is off; give a naive one.")
    return check_due(due)


def next_tick(cron: str, after: datetime) -> datetime:
    """The first tick of ``cron`` after ``after`` (aware, or naive as ``after`` is), read in
    the cron time zone."""
    return next_cron_due(cron, after, conf.cron_time_zone)


def _user_id(user: Any) -> Any:
    """The primary key of ``user`` (a saved user or a user id), or None for a system job."""
    if user is None:
        return None
    user_model = get_user_model()
    if isinstance(user, models.Model):
        if not isinstance(user, user_model) or user.pk is None:
            raise InvalidUser(f"user={user!r} is not a saved {user_model.__name__}.")
        return user.pk
    if isinstance(user, bool) or not isinstance(user, int | str | uuid.UUID):
        raise InvalidUser(f"user={user!r} is neither a {user_model.__name__}, a user id nor None.")
    try:
        return user_model._meta.pk.to_python(user)
    except ValidationError:
        raise InvalidUser(f"user={user!r} is not a valid {user_model.__name__} id.") from None


def _check_users_exist(jobs: list[WorkerJob], alias: str) -> None:
    """Refuse ids of users that do not exist, with one query for the whole submission."""
    ids = {
        job.user_id for job in jobs if job.user_id is not None and not WorkerJob.user.is_cached(job)
    }
    if not ids:
        return
    users = get_user_model()._default_manager.using(alias)
    found = set(users.filter(pk__in=ids).values_list("pk", flat=True))
    missing = sorted(ids - found, key=str)
    if missing:
        raise InvalidUser(f"user={missing[0]!r} is not the id of an existing user.")


def lock_tags(tags: list[str], alias: str) -> None:
    """Serialize submissions of the same tags until this transaction ends.

    Without it, two concurrent "replace" or "skip" submissions could each see no scheduled
    job and both insert one.
    """
    database(alias).lock_tags(tags)


def insert(jobs: list[WorkerJob], alias: str) -> list[WorkerJob]:
    """Write ``jobs`` with one INSERT and wake the workers of their queues on commit."""
    database(alias).insert_jobs(jobs)
    return jobs


def wake_workers(queues: set[str], alias: str) -> None:
    """Tell waiting workers which queues got jobs, once this transaction commits."""
    database(alias).wake_workers(queues)


# What a retry or a cron job's next run copies from the run before, besides its options.
COPIED_FIELDS = ("tag", "type", "user_id", "data", "trace_context")


def copy_of(job: WorkerJob, **changes: Any) -> WorkerJob:
    """An unsaved row like ``job``: its tag, type, owner, data, trace and options, and
    ``changes``; the rest starts afresh."""
    fields = {name: getattr(job, name) for name in COPIED_FIELDS}
    return WorkerJob(**fields, **JobOptions.of(job).as_fields(), **changes)


def resubmit(job: WorkerJob, *, due: datetime) -> WorkerJob:
    """Write a scheduled copy of ``job`` due at ``due``, linked by ``rescheduled_from``.

    The copy is a one-off: a cron job's chain goes on through its next occurrence, not
    through its retries. A retry belongs to the trace its first run was submitted in.
    """
    copy = copy_of(job, due=due, attempt=job.attempt, rescheduled_from=job)
    alias = router.db_for_write(WorkerJob)
    with transaction.atomic(using=alias, savepoint=False):
        insert([copy], alias)
        send(job_retried, job=job, retry=copy)
    return copy
