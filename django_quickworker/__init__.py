"""Background jobs for Django, queued in the project's own database."""

from typing import TYPE_CHECKING, Any

from django_quickworker.registry import job

if TYPE_CHECKING:
    from django_quickworker.submit import submit_job, submit_jobs

__version__ = "0.1.0"
__all__ = ["job", "submit_job", "submit_jobs"]

_LAZY = {"submit_job", "submit_jobs"}


def __getattr__(name: str) -> Any:
    # submit imports the models, which need a ready app registry: load it on first use.
    if name in _LAZY:
        from django_quickworker import submit

        return getattr(submit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
