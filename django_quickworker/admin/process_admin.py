"""The runworkers processes: read-only, written by their heartbeats."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_quickworker.admin import display
from django_quickworker.models import WorkerProcess


@admin.register(WorkerProcess)
class WorkerProcessAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "alive",
        "workers",
        "queues_display",
        "version",
        "started_time",
        "heartbeat_time",
    ]
    ordering = ["-heartbeat"]
    empty_value_display = display.EMPTY
    started_time = display.time_field("started", _("started"))
    heartbeat_time = display.time_field("heartbeat", _("last heartbeat"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("alive"), boolean=True)
    def alive(self, process: WorkerProcess) -> bool:
        return process.is_alive(timezone.now())

    @admin.display(description=_("queues"))
    def queues_display(self, process: WorkerProcess) -> str:
        return process.queues.replace(",", ", ") or str(_("all"))
