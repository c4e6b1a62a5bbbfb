"""The job list's filters: fixed choices, so none runs a SELECT DISTINCT over the table."""

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_quickworker.models import Status, WorkerProcess
from django_quickworker.registry import registry


class TypeFilter(admin.SimpleListFilter):
    """The registered job types."""

    title = _("type")
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(job_type.name, job_type.name) for job_type in registry]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(type=self.value()) if self.value() else queryset


class QueueFilter(admin.SimpleListFilter):
    """The queues of the registered job types, those runworkers serve, and "default"."""

    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        served = WorkerProcess.objects.exclude(queues="").values_list("queues", flat=True)
        queues = {"default"} | {job_type.options.queue for job_type in registry}
        queues.update(queue for names in served for queue in names.split(","))
        return [(queue, queue) for queue in sorted(queues)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(queue=self.value()) if self.value() else queryset


class KindFilter(admin.SimpleListFilter):
    title = _("kind")
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("cron", _("Cron")), ("one-off", _("One-off"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "cron":
            return queryset.exclude(cron_schedule="")
        if self.value() == "one-off":
            return queryset.filter(cron_schedule="")
        return queryset


class FailedRecentlyFilter(admin.SimpleListFilter):
    title = _("failed recently")
    parameter_name = "failed"
    PERIODS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("hour", _("In the last hour")), ("day", _("In the last day"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        period = self.PERIODS.get(self.value() or "")
        if period is None:
            return queryset
        return queryset.filter(status=Status.FAILED, finished__gte=timezone.now() - period)
