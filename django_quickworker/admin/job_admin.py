"""The job admin: the list, a read-only page per job, and the add form."""

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.functional import SimpleLazyObject
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_quickworker.admin import actions, display
from django_quickworker.admin.changelist import BoundedPaginator, WorkerJobChangeList
from django_quickworker.admin.filters import (
    FailedRecentlyFilter,
    KindFilter,
    QueueFilter,
    TypeFilter,
)
from django_quickworker.admin.forms import SubmitJobForm
from django_quickworker.admin.live import live_rows
from django_quickworker.admin.summary import summary_context
from django_quickworker.models import Status, WorkerJob
from django_quickworker.registry import registry
from django_quickworker.schedule import format_duration

LIVE_URL_NAME = "quickworker_workerjob_live"

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec


def job_fieldsets(outcome: tuple[str, ...]) -> "_FieldsetSpec":
    """A job's page, with the ``outcome`` fields its status calls for."""
    return [
        (None, {"fields": ["id", "type", "tag", "user", "queue", "priority", "status_display"]}),
        (
            _("Timing"),
            {
                "fields": [
                    "due_time",
                    "started_time",
                    "finished_time",
                    "duration",
                    "created_time",
                    "updated_time",
                ]
            },
        ),
        (_("Data"), {"fields": ["data_json"]}),
        (_("Outcome"), {"fields": outcome}),
        (_("Retries"), {"fields": ["attempts", "retry_policy", "chain"]}),
        (
            _("Worker"),
            {
                "fields": [
                    "worker_display",
                    "lease_time",
                    "cancel_requested_time",
                    "timeout_display",
                ]
            },
        ),
        (_("Schedule"), {"fields": ["cron_display", "next_runs_display"]}),
        (_("Retention"), {"fields": ["retention"]}),
    ]


FIELDSETS = job_fieldsets(("result_json", "traceback", "progress_json"))
# A cancelled job may have been replaced by a newer one of its tag: it links that job.
CANCELLED_FIELDSETS = job_fieldsets(("result_json", "replaced_by", "traceback"))
ADD_FIELDSETS: "_FieldsetSpec" = [
    (None, {"fields": ["type", "tag", "user", "data"]}),
    (_("When"), {"fields": ["due", "delay", "cron"]}),
    (_("Options"), {"fields": ["queue", "priority", "max_attempts", "on_duplicate_tag"]}),
]


@admin.register(WorkerJob)
class WorkerJobAdmin(admin.ModelAdmin):
    # Dense enough for a 1,366 px laptop beside the filters: the rest is on a job's page
    # (queue, priority, finish time, attempt details) or behind a filter.
    list_display = ["id", "job", "status_display", "due_at", "started_at", "duration"]
    list_display_links = ["id"]
    list_filter = ["status", TypeFilter, QueueFilter, KindFilter, FailedRecentlyFilter]
    search_fields = ["=id", "=type", "^tag"]
    search_help_text = _("An id, a job type's exact name, or the beginning of a tag.")
    date_hierarchy = "due"
    sortable_by = ["id", "due_at"]
    list_select_related = ["user"]
    list_per_page = 100
    paginator = BoundedPaginator
    show_full_result_count = False  # no COUNT(*) of the whole table on every page
    show_facets = admin.ShowFacets.NEVER  # facets would count every filter choice
    raw_id_fields = ["user"]
    add_form = SubmitJobForm
    actions = [actions.run_now, actions.retry, actions.cancel]
    change_list_template = "admin/quickworker/workerjob/change_list.html"
    change_form_template = "admin/quickworker/workerjob/change_form.html"
    fieldsets = FIELDSETS
    add_fieldsets = ADD_FIELDSETS
    empty_value_display = display.EMPTY

    class Media:
        css = {"all": ["django_quickworker/admin.css"]}
        js = ["django_quickworker/admin-live.js"]

    # Read-only rows: only the add form (through submit_job) and the actions write.

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Without an object this guards the actions; a job's page is never a form.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # cleanup removes rows; cancel stops jobs

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return self.add_fieldsets
        return CANCELLED_FIELDSETS if obj.status == Status.CANCELLED else self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        fieldsets = self.get_fieldsets(request, obj)
        return [field for _name, options in fieldsets for field in options["fields"]]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change, **kwargs)

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        return form.submit()

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Nothing left to save: ``save_form`` submitted the job."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """A submitted job has no related objects to save."""

    # The list

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        """Newest first; by due time within a date of the hierarchy, which the due index
        serves (ids and due times need not follow each other)."""
        drilled = any(key.startswith("due__") for key in request.GET)
        return ("-due", "-id") if drilled else ("-id",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Match an exact id, an exact type name or the start of a tag: lookups an index
        can answer, unlike Django's default icontains, which reads every row."""
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(tag__startswith=term)
        if term.isascii() and term.isdigit() and int(term) < 2**63:
            condition |= Q(pk=int(term))
        if term in registry:
            condition |= Q(type=term)
        return queryset.filter(condition), False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return WorkerJobChangeList

    def get_urls(self) -> list[URLPattern]:
        live = path("live/", self.admin_site.admin_view(self.live_view), name=LIVE_URL_NAME)
        return [live, *super().get_urls()]

    def live_view(self, request: HttpRequest) -> HttpResponse:
        return live_rows(self, request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Lazy: an action's POST redirects without showing it.
        context = {"summary": SimpleLazyObject(summary_context), **(extra_context or {})}
        return super().changelist_view(request, context)

    # A job's page, and the add form

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # A submitted job's page is read-only: there is nothing to go on editing.
        context = {"show_save_and_continue": False, **(extra_context or {})}
        return super().add_view(request, form_url, context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {"job_actions": self._job_actions(request, object_id), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    def response_action(
        self, request: HttpRequest, queryset: QuerySet[Any], *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        """Run an action; from a job's page, go back to that page rather than the list."""
        response = super().response_action(request, queryset, *args, **kwargs)
        job_id = request.POST.get("_job_page", "")
        if isinstance(response, HttpResponseRedirect) and job_id.isdigit():
            return HttpResponseRedirect(
                reverse("admin:quickworker_workerjob_change", args=[job_id])
            )
        return response

    def _job_actions(self, request: HttpRequest, object_id: str) -> list[tuple[str, str]]:
        """The actions the job page offers as buttons: (name, label), those the operator
        may run and that would change this job."""
        allowed = self.get_actions(request)
        applicable = actions.applicable_actions(object_id)
        return [(name, action_label(allowed[name])) for name in applicable if name in allowed]

    # Columns and fields

    @admin.display(description=_("job"))
    def job(self, job: WorkerJob) -> SafeString:
        return display.job_of(job)

    @admin.display(description=_("status"))
    def status_display(self, job: WorkerJob) -> SafeString:
        return display.status_of(job)

    @admin.display(description=_("due"), ordering="due")
    def due_at(self, job: WorkerJob) -> SafeString | str:
        return display.short_moment(job.due)

    @admin.display(description=_("started"))
    def started_at(self, job: WorkerJob) -> SafeString | str:
        return display.short_moment(job.started)

    @admin.display(description=_("duration"))
    def duration(self, job: WorkerJob) -> str:
        elapsed = display.duration_of(job)
        return display.EMPTY if elapsed is None else format_duration(elapsed)

    due_time = display.time_field("due", _("due"))
    started_time = display.time_field("started", _("started"))
    finished_time = display.time_field("finished", _("finished"))
    created_time = display.time_field("created_at", _("created at"))
    updated_time = display.time_field("updated_at", _("updated at"))
    lease_time = display.time_field("lease_expires", _("lease expires"))
    cancel_requested_time = display.time_field("cancel_requested", _("cancel requested"))

    @admin.display(description=_("attempt"))
    def attempts(self, job: WorkerJob) -> str:
        return display.attempts_of(job)

    @admin.display(description=_("if a run fails"))
    def retry_policy(self, job: WorkerJob) -> SafeString:
        return display.retry_policy_of(job)

    @admin.display(description=_("data"))
    def data_json(self, job: WorkerJob) -> SafeString | str:
        return display.pretty_json(job.data)

    @admin.display(description=_("result"))
    def result_json(self, job: WorkerJob) -> SafeString | str:
        return display.pretty_json(job.result)

    @admin.display(description=_("replaced by"))
    def replaced_by(self, job: WorkerJob) -> SafeString | str:
        return display.replacement_of(job)

    @admin.display(description=_("progress"))
    def progress_json(self, job: WorkerJob) -> SafeString | str:
        return display.pretty_json(job.progress)

    @admin.display(description=_("traceback"))
    def traceback(self, job: WorkerJob) -> SafeString | str:
        return display.traceback_of(job)

    @admin.display(description=_("retry chain"))
    def chain(self, job: WorkerJob) -> SafeString:
        return display.chain_of(job)

    @admin.display(description=_("worker"))
    def worker_display(self, job: WorkerJob) -> SafeString | str:
        return display.worker_of(job)

    @admin.display(description=_("timeout"))
    def timeout_display(self, job: WorkerJob) -> str:
        return display.EMPTY if job.timeout is None else format_duration(job.timeout)

    @admin.display(description=_("cron schedule"))
    def cron_display(self, job: WorkerJob) -> str:
        return job.cron_schedule or display.EMPTY

    @admin.display(description=_("next runs"))
    def next_runs_display(self, job: WorkerJob) -> SafeString | str:
        return display.next_runs_of(job)

    @admin.display(description=_("retention"))
    def retention(self, job: WorkerJob) -> SafeString:
        return display.retention_of(job)


def action_label(action: Any) -> str:
    """An admin action's description: an attribute from Django 6.1, a tuple's third item before."""
    return str(getattr(action, "description", None) or action[2])
