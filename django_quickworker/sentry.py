"""Failed jobs as Sentry events, when the project has initialised ``sentry_sdk``.

One event per failed attempt, raised from the job's own code: the exception with its
traceback, the job's id, type, tag, queue and attempt as tags (to search and filter by),
the job's own fields as the ``job`` context, and its data as the extra data ``job_data``:
Sentry trims extra data (five levels deep, ten items a level) but would send a context
whole, and a job's data may be large. The fingerprint
is the job type and the exception's class, so every attempt of every job of one type that
fails the same way lands in one Sentry issue instead of one issue per job.
"""

from typing import Any

from django_quickworker.models import WorkerJob

try:
    import sentry_sdk
except ImportError:  # Sentry is the project's choice, not a dependency of ours
    sentry_sdk = None  # type: ignore[assignment]

MAX_TAG_LENGTH = 200  # Sentry refuses longer tag values


def report_failure(job: WorkerJob, error: BaseException) -> None:
    """Send ``error``, raised by ``job``, to Sentry, if Sentry is set up in this process."""
    if sentry_sdk is None or not sentry_sdk.get_client().is_active():
        return
    with sentry_sdk.new_scope() as scope:
        for name, value in job_tags(job).items():
            scope.set_tag(name, value)
        scope.set_context("job", job_context(job))
        scope.set_extra("job_data", job.data)
        scope.fingerprint = ["quickworker", job.type, qualified_name(error)]
        sentry_sdk.capture_exception(error)


def job_tags(job: WorkerJob) -> dict[str, str]:
    tags = {
        "job.id": job.pk,
        "job.type": job.type,
        "job.tag": job.tag,
        "job.queue": job.queue,
        "job.attempt": job.attempt,
    }
    return {name: str(value)[:MAX_TAG_LENGTH] for name, value in tags.items()}


def job_context(job: WorkerJob) -> dict[str, Any]:
    return {
        "id": job.pk,
        "type": job.type,
        "tag": job.tag,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "worker": job.worker,
    }


def qualified_name(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"
