from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _


class QuickworkerConfig(AppConfig):
    name = "django_quickworker"
    label = "quickworker"
    verbose_name = _("Quickworker")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_quickworker import checks  # noqa: F401  (registers the system checks)
        from django_quickworker.notifications import tell_owner_finished, tell_owner_started
        from django_quickworker.signals import job_finished, job_started

        job_started.connect(tell_owner_started, dispatch_uid="quickworker.tell_owner_started")
        job_finished.connect(tell_owner_finished, dispatch_uid="quickworker.tell_owner_finished")

        # Import every installed app's jobs module, as the admin does with admin.py,
        # so that each @job decorator has run before anything submits or claims.
        autodiscover_modules("jobs")
