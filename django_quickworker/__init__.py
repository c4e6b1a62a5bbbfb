"""Background jobs for Django, queued in the project's own database."""

from typing import TYPE_CHECKING

from django_quickworker.lazy import lazy_names
from django_quickworker.registry import job

if TYPE_CHECKING:
    from django_quickworker.notifications import broadcast, notify_user
    from django_quickworker.submit import submit_job, submit_jobs

__version__ = "0.1.0"
__all__ = ["broadcast", "job", "notify_user", "submit_job", "submit_jobs"]

# Public names whose modules import the models or the channel layer, which need a ready
# app registry: they are loaded on first use, so that INSTALLED_APPS can import this package.
__getattr__ = lazy_names(
    __name__,
    {
        "submit_job": "django_quickworker.submit",
        "submit_jobs": "django_quickworker.submit",
        "notify_user": "django_quickworker.notifications",
        "broadcast": "django_quickworker.notifications",
    },
)
