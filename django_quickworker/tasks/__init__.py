"""A backend for Django's Tasks framework: ``@task`` functions run on ``runworkers``.

``TASKS = {"default": {"BACKEND": "django_quickworker.tasks.QuickworkerBackend"}}``
"""

import importlib
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.module_loading import autodiscover_modules

from django_quickworker.lazy import lazy_names

if TYPE_CHECKING:
    from django_quickworker.tasks.backend import QuickworkerBackend, QuickworkerTask
    from django_quickworker.tasks.runner import report_progress

__all__ = ["QuickworkerBackend", "QuickworkerTask", "discover_tasks", "report_progress"]

# The backend writes rows, so its modules import the models: loaded on first use, so that
# importing this package never needs a ready app registry.
__getattr__ = lazy_names(
    __name__,
    {
        "QuickworkerBackend": "django_quickworker.tasks.backend",
        "QuickworkerTask": "django_quickworker.tasks.backend",
        "report_progress": "django_quickworker.tasks.runner",
    },
)


def discover_tasks() -> None:
    """Import each installed app's ``tasks`` module and the MODULES of every alias that
    uses this backend, so that a worker knows all their tasks before it claims."""
    if not getattr(settings, "TASKS", None):
        return  # Django 5.2 without the backport: no tasks, and nothing to import them with
    from django_quickworker.tasks.backend import QuickworkerBackend
    from django_quickworker.tasks.framework import task_backends

    ours = [backend for backend in task_backends.all() if isinstance(backend, QuickworkerBackend)]
    if not ours:
        return
    autodiscover_modules("tasks")
    for backend in ours:
        for module in backend.modules:
            importlib.import_module(module)
