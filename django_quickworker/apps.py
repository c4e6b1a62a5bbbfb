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

        # Import every installed app's jobs module, as the admin does with admin.py,
        # so that each @job decorator has run before anything submits or claims.
        autodiscover_modules("jobs")
