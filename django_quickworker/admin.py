"""The admin: watch the queue and steer it.

Job rows are read-only here: every change goes through the lifecycle's own paths — the add
form calls ``submit_job``; the actions (run now, retry, cancel) use the queryset methods,
``resubmit`` and ``cancel_requested`` — so the admin can never put a row in a state the
workers do not expect. Nothing here counts, sorts or SELECT DISTINCTs a whole table of a
million rows on a page view: filters offer fixed choices, counts stop early
(``status.count_rows``) and the date hierarchy reads one MIN/MAX.
"""

import calendar
import json
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.paginator import Paginator
from django.db import router, transaction
from django.db.models import Count, Max, Min, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.functional import SimpleLazyObject, cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_quickworker.conf import conf
from django_quickworker.exceptions import (
    InvalidCronSchedule,
    InvalidJobData,
    InvalidJobError,
    InvalidUser,
    UnknownJobType,
)
from django_quickworker.models import Status, WorkerJob, WorkerJobQuerySet, WorkerProcess
from django_quickworker.registry import registry
from django_quickworker.schedule import next_cron_due
from django_quickworker.status import RowCount, count_rows, format_duration, summarize
from django_quickworker.submit import _wake_workers, build_job, resubmit, submit_job

CANCELLED_BY_OPERATOR = "Cancelled by an operator."
RETRY_LIMIT = 1000  # jobs one "retry" action resubmits; each is a row written
JSON_DISPLAY_LIMIT = 100_000  # characters of data or result shown on a job's page
CHAIN_LIMIT = 25  # retries shown each way from a job
NEXT_RUNS = 3  # upcoming cron ticks shown on a job's page


# --- The list: filters with fixed choices, bounded counts, a cheap date hierarchy ---------


class TypeFilter(admin.SimpleListFilter):
    """The registered job types: no SELECT DISTINCT over the table."""

    title = _("type")
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(job_type.name, job_type.name) for job_type in registry]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(type=self.value()) if self.value() else queryset


class QueueFilter(admin.SimpleListFilter):
    """The queues the registered job types use, and "default"."""

    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        queues = sorted({"default"} | {job_type.queue for job_type in registry})
        return [(queue, queue) for queue in queues]

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


class BoundedPaginator(Paginator):
    """Counts at most ``status.COUNT_LIMIT`` rows, then estimates (PostgreSQL) or says
    "more than": a COUNT(*) over a million-row queue on every page view costs more than
    the page itself. Past the count, the list is reached by sorting or filtering."""

    @cached_property
    def row_count(self) -> RowCount:
        return count_rows(self.object_list)  # type: ignore[arg-type]

    @cached_property
    def count(self) -> int:
        return self.row_count.value


class WorkerJobChangeList(ChangeList):
    @cached_property
    def date_drilldown(self) -> dict[str, Any]:
        """Django's date hierarchy, from one MIN/MAX query instead of a SELECT DISTINCT
        over every matching row: a link for each year, month or day between the first and
        the last due time."""
        name = self.date_hierarchy
        year, month, day = (self.params.get(f"{name}__{part}") for part in ("year", "month", "day"))

        def link(filters: dict[str, Any]) -> str:
            return str(self.get_query_string(filters, [f"{name}__"]))

        if year and month and day:
            chosen = date(int(year), int(month), int(day))
            back = {"link": link({f"{name}__year": year, f"{name}__month": month})}
            back["title"] = capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT"))
            title = capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))
            return {"show": True, "back": back, "choices": [{"title": title}]}
        bounds = self.queryset.aggregate(first=Min(name), last=Max(name))
        if bounds["first"] is None:
            return {"show": bool(year), "back": self._back(link, year, month), "choices": []}
        first, last = (timezone.localtime(bounds[end]) for end in ("first", "last"))
        if not year and first.year == last.year:
            year = str(first.year)
            month = month or (str(first.month) if first.month == last.month else None)
        choices = self._choices(link, first, last, year, month)
        return {"show": True, "back": self._back(link, year, month), "choices": choices}

    def _back(
        self, link: Callable[[dict[str, Any]], str], year: str | None, month: str | None
    ) -> dict[str, str] | None:
        name = self.date_hierarchy
        if year and month:
            return {"link": link({f"{name}__year": year}), "title": year}
        if year:
            return {"link": link({}), "title": str(_("All dates"))}
        return None

    def _choices(
        self,
        link: Callable[[dict[str, Any]], str],
        first: datetime,
        last: datetime,
        year: str | None,
        month: str | None,
    ) -> list[dict[str, str]]:
        name = self.date_hierarchy
        if year and month:
            y, m = int(year), int(month)
            days = range(first.day, last.day + 1) if (first.year, first.month) == (y, m) else []
            if (last.year, last.month) != (y, m):
                days = range(days.start if days else 1, calendar.monthrange(y, m)[1] + 1)
            params = {f"{name}__year": year, f"{name}__month": month}
            return [
                {
                    "link": link({**params, f"{name}__day": day}),
                    "title": capfirst(formats.date_format(date(y, m, day), "MONTH_DAY_FORMAT")),
                }
                for day in days
            ]
        if year:
            y = int(year)
            start = first.month if first.year == y else 1
            end = last.month if last.year == y else 12
            return [
                {
                    "link": link({f"{name}__year": year, f"{name}__month": m}),
                    "title": capfirst(formats.date_format(date(y, m, 1), "YEAR_MONTH_FORMAT")),
                }
                for m in range(start, end + 1)
            ]
        return [
            {"link": link({f"{name}__year": y}), "title": str(y)}
            for y in range(first.year, last.year + 1)
        ]


# --- Showing a job ------------------------------------------------------------------------


def status_badge(status: str) -> SafeString:
    return format_html(
        '<span class="qw-badge qw-status-{}">{}</span>', status, Status(status).label
    )


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON in a <pre>, escaped; shortened past JSON_DISPLAY_LIMIT."""
    if value is None:
        return format_html('<span class="qw-muted">{}</span>', _("none"))
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    if len(text) > JSON_DISPLAY_LIMIT:
        note = _("… shortened: %(size)s characters in all.") % {"size": f"{len(text):,}"}
        text = f"{text[:JSON_DISPLAY_LIMIT]}\n{note}"
    return format_html('<pre class="qw-pre">{}</pre>', text)


def job_link(job: WorkerJob, current: WorkerJob | None = None) -> SafeString:
    label = format_html("#{} {} {}", job.pk, status_badge(job.status), _when(job))
    if current is not None and job.pk == current.pk:
        return format_html('<strong>{}</strong> <span class="qw-muted">{}</span>', label, _("this"))
    url = reverse("admin:quickworker_workerjob_change", args=[job.pk])
    return format_html('<a href="{}">{}</a>', url, label)


def _when(job: WorkerJob) -> str:
    """When a run finished, started or is due, whichever it has got to."""
    when = job.finished or job.started or job.due
    return formats.date_format(timezone.localtime(when), "DATETIME_FORMAT")


def duration_of(job: WorkerJob, now: datetime | None = None) -> timedelta | None:
    if job.started is None:
        return None
    return (job.finished or now or timezone.now()) - job.started


def retry_chain(job: WorkerJob) -> list[WorkerJob]:
    """The runs linked to ``job`` by ``rescheduled_from``, oldest first, ``job`` among them."""
    earlier: list[WorkerJob] = []
    current = job
    while current.rescheduled_from_id is not None and len(earlier) < CHAIN_LIMIT:
        previous = WorkerJob.objects.filter(pk=current.rescheduled_from_id).first()
        if previous is None:  # removed by cleanup
            break
        earlier.insert(0, previous)
        current = previous
    later: list[WorkerJob] = []
    current = job
    while len(later) < CHAIN_LIMIT:
        retries = list(WorkerJob.objects.filter(rescheduled_from=current).order_by("pk")[:2])
        if not retries:
            break
        later.extend(retries)  # more than one only when an operator also retried it
        current = retries[-1]
    return [*earlier, job, *later]


def next_runs(expression: str, count: int = NEXT_RUNS) -> list[datetime]:
    """The next ``count`` ticks of a cron schedule after now."""
    runs: list[datetime] = []
    after = timezone.now()
    for _index in range(count):
        after = next_cron_due(expression, after, conf.cron_time_zone)
        runs.append(after)
    return runs


def summary_context() -> dict[str, Any]:
    """The queue's summary, ready for the template above the job list."""
    summary = summarize()
    latency = summary.latency
    return {
        "counts": [
            (status, Status(status).label, count) for status, count in summary.counts.items()
        ],
        "latency": None if latency is None else format_duration(latency),
        "due": summary.due,
        "failed_recently": summary.failed_recently,
        "processes": [
            (process, format_duration(summary.checked_at - process.heartbeat))
            for process in summary.processes
        ],
        "problems": summary.problems,
    }


# --- Adding a job: a form over submit_job -------------------------------------------------


class SubmitJobForm(forms.ModelForm):
    """Submit a job through ``submit_job``, so every rule that applies in code applies here."""

    type = forms.ChoiceField(label=_("type"), choices=())
    tag = forms.CharField(
        label=_("tag"),
        max_length=255,
        help_text=_("Scheduled jobs with the same tag are replaced, unless you allow both."),
    )
    data = forms.CharField(
        label=_("data"),
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 8, "class": "vLargeTextField qw-code"}),
        help_text=_('JSON, e.g. {"email": "a@example.com"}; empty means {}.'),
    )
    due = forms.SplitDateTimeField(
        label=_("due"),
        required=False,
        widget=AdminSplitDateTime,
        help_text=_("Leave due and delay empty to run it now (or at the next cron tick)."),
    )
    delay = forms.FloatField(
        label=_("delay"), required=False, min_value=0, help_text=_("Seconds from now.")
    )
    cron = forms.CharField(
        label=_("cron schedule"),
        required=False,
        max_length=100,
        help_text=_(
            "Repeat on this schedule: 5 fields, 6 with seconds first, or @hourly; "
            "in the %(zone)s time zone."
        )
        % {"zone": "QUICKWORKER['CRON_TIME_ZONE']"},
    )
    queue = forms.CharField(
        label=_("queue"), required=False, max_length=100, help_text=_("Empty: the type's queue.")
    )
    priority = forms.IntegerField(
        label=_("priority"),
        required=False,
        help_text=_("Higher runs first. Empty: the type's priority."),
    )
    max_attempts = forms.IntegerField(
        label=_("max attempts"),
        required=False,
        min_value=1,
        help_text=_("More than 1 retries failed runs. Empty: the type's setting."),
    )
    on_duplicate_tag = forms.ChoiceField(
        label=_("if the tag is taken"),
        choices=[
            ("replace", _("Cancel the scheduled jobs with this tag")),
            ("allow", _("Keep them too")),
        ],
        initial="replace",
    )

    class Meta:
        model = WorkerJob
        fields = ["type", "tag", "user", "data", "queue", "priority", "max_attempts"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(job_type.name, job_type.name) for job_type in registry]
        self.fields["type"].choices = [("", "---------"), *choices]  # type: ignore[attr-defined]

    def clean_data(self) -> Any:
        text = self.cleaned_data["data"].strip()
        if not text:
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(
                _("This is not valid JSON: %(error)s at line %(line)d, column %(column)d."),
                params={"error": error.msg, "line": error.lineno, "column": error.colno},
                code="invalid_json",
            ) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.errors:
            try:  # the checks submit_job makes, without writing anything
                build_job(now=timezone.now(), **self.submission())
            except InvalidJobError as error:
                self.add_error(self._field_of(error), str(error))
        return cleaned

    def submission(self) -> dict[str, Any]:
        """The ``submit_job`` arguments; empty optional fields take the type's defaults."""
        cleaned = self.cleaned_data
        return {
            "tag": cleaned["tag"],
            "type": cleaned["type"],
            "user": cleaned.get("user"),
            "data": cleaned.get("data"),
            "due": cleaned.get("due"),
            "delay": cleaned.get("delay"),
            "cron": cleaned.get("cron") or None,
            "queue": cleaned.get("queue") or None,
            "priority": cleaned.get("priority"),
            "max_attempts": cleaned.get("max_attempts"),
        }

    def submit(self) -> WorkerJob:
        return submit_job(
            **self.submission(), on_duplicate_tag=self.cleaned_data["on_duplicate_tag"]
        )

    def _field_of(self, error: InvalidJobError) -> str | None:
        """The form field an error is about: by its class, else by the "name=..." it opens with."""
        for error_class, field in ERROR_FIELDS.items():
            if isinstance(error, error_class):
                return field
        name = str(error).split("=", 1)[0]
        return name if name in self.fields else None


ERROR_FIELDS: dict[type[InvalidJobError], str] = {
    UnknownJobType: "type",
    InvalidJobData: "data",
    InvalidCronSchedule: "cron",
    InvalidUser: "user",
}


# --- The job admin ------------------------------------------------------------------------


@admin.register(WorkerJob)
class WorkerJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "type",
        "short_tag",
        "user",
        "status_display",
        "due",
        "started",
        "finished",
        "duration",
        "attempts",
        "queue",
        "progress_bar",
    ]
    list_display_links = ["id"]
    list_filter = [
        "status",
        TypeFilter,
        QueueFilter,
        KindFilter,
        FailedRecentlyFilter,
    ]
    search_fields = ["=id", "=type", "^tag"]
    search_help_text = _(
        "An id, a job type's exact name, or the beginning of a tag (case-sensitive)."
    )
    date_hierarchy = "due"
    sortable_by = ["id", "due"]
    list_select_related = ["user"]
    list_per_page = 100
    paginator = BoundedPaginator
    show_full_result_count = False  # no COUNT(*) of the whole table on every page
    show_facets = admin.ShowFacets.NEVER  # facets would count every filter choice
    raw_id_fields = ["user"]
    add_form = SubmitJobForm
    actions = ["run_now", "retry", "cancel"]
    change_list_template = "admin/quickworker/workerjob/change_list.html"
    change_form_template = "admin/quickworker/workerjob/change_form.html"

    fieldsets = [
        (None, {"fields": ["id", "type", "tag", "user", "queue", "priority", "status_display"]}),
        (
            _("Timing"),
            {"fields": ["due", "started", "finished", "duration", "created_at", "updated_at"]},
        ),
        (_("Data"), {"fields": ["data_json"]}),
        (_("Outcome"), {"fields": ["result_json", "traceback", "progress_json"]}),
        (
            _("Retries"),
            {
                "fields": [
                    "attempts",
                    "auto_reschedule_on_failure",
                    "auto_reschedule_on_failure_delay",
                    "retry_backoff",
                    "chain",
                ]
            },
        ),
        (
            _("Worker"),
            {"fields": ["worker_display", "lease_expires", "cancel_requested", "timeout"]},
        ),
        (_("Schedule"), {"fields": ["cron_schedule", "next_runs_display"]}),
        (_("Retention"), {"fields": ["persistent", "remove_delay", "remove_at"]}),
    ]
    add_fieldsets = [
        (None, {"fields": ["type", "tag", "user", "data"]}),
        (_("When"), {"fields": ["due", "delay", "cron"]}),
        (_("Options"), {"fields": ["queue", "priority", "max_attempts", "on_duplicate_tag"]}),
    ]

    class Media:
        css = {"all": ["django_quickworker/admin.css"]}

    # Read-only rows: only the add form (through submit_job) and the actions write.

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Without an object this guards the actions; a job's page is never a form.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # cleanup removes rows; cancel stops jobs

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return [field for _name, options in self.fieldsets for field in options["fields"]]

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

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Lazy: an action's POST redirects without showing it.
        context = {"summary": SimpleLazyObject(summary_context), **(extra_context or {})}
        return super().changelist_view(request, context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {"job_actions": self._job_actions(request, object_id), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        """Run an action; from a job's page, go back to that page rather than the list."""
        response = super().response_action(request, queryset)
        job_id = request.POST.get("_job_page", "")
        if isinstance(response, HttpResponseRedirect) and job_id.isdigit():
            return HttpResponseRedirect(
                reverse("admin:quickworker_workerjob_change", args=[job_id])
            )
        return response

    def _job_actions(self, request: HttpRequest, object_id: str) -> list[tuple[str, str]]:
        """The actions the job page offers as buttons: (name, label) where they apply."""
        job = WorkerJob.objects.filter(pk=object_id).only("status", "cancel_requested").first()
        if job is None:
            return []
        allowed = self.get_actions(request)
        applicable = {
            "run_now": job.status == Status.SCHEDULED,
            "retry": job.status in (Status.FAILED, Status.CANCELLED),
            "cancel": job.status == Status.SCHEDULED
            or (job.status == Status.RUNNING and job.cancel_requested is None),
        }
        return [
            (name, str(allowed[name][2]))
            for name, applies in applicable.items()
            if applies and name in allowed
        ]

    # Columns and fields

    @admin.display(description=_("tag"))
    def short_tag(self, job: WorkerJob) -> str:
        return job.tag if len(job.tag) <= 60 else job.tag[:59] + "…"

    @admin.display(description=_("status"))
    def status_display(self, job: WorkerJob) -> SafeString:
        badge = status_badge(job.status)
        if job.status == Status.RUNNING and job.cancel_requested:
            return format_html('{} <span class="qw-muted">{}</span>', badge, _("stopping"))
        return badge

    @admin.display(description=_("duration"))
    def duration(self, job: WorkerJob) -> str:
        elapsed = duration_of(job)
        return "" if elapsed is None else format_duration(elapsed)

    @admin.display(description=_("attempt"))
    def attempts(self, job: WorkerJob) -> str:
        return f"{job.attempt}/{job.max_attempts}"

    @admin.display(description=_("progress"))
    def progress_bar(self, job: WorkerJob) -> SafeString | str:
        progress = job.progress
        if job.status != Status.RUNNING or not isinstance(progress, dict):
            return ""
        current, total = progress.get("current"), progress.get("total")
        message = str(progress.get("message") or "")
        if not isinstance(current, int | float) or isinstance(current, bool):
            return message
        if isinstance(total, int | float) and not isinstance(total, bool) and total > 0:
            return format_html(
                '<progress class="qw-progress" max="{}" value="{}"></progress> {}/{} {}',
                total,
                min(current, total),
                f"{current:g}",
                f"{total:g}",
                message,
            )
        return format_html(
            '<progress class="qw-progress"></progress> {} {}', f"{current:g}", message
        )

    @admin.display(description=_("data"))
    def data_json(self, job: WorkerJob) -> SafeString:
        return pretty_json(job.data)

    @admin.display(description=_("result"))
    def result_json(self, job: WorkerJob) -> SafeString:
        return pretty_json(job.result)

    @admin.display(description=_("progress"))
    def progress_json(self, job: WorkerJob) -> SafeString:
        return pretty_json(job.progress)

    @admin.display(description=_("traceback"))
    def traceback(self, job: WorkerJob) -> SafeString:
        if not job.error_traceback:
            return format_html('<span class="qw-muted">{}</span>', _("none"))
        return format_html('<pre class="qw-pre qw-traceback">{}</pre>', job.error_traceback)

    @admin.display(description=_("retry chain"))
    def chain(self, job: WorkerJob) -> SafeString:
        runs = retry_chain(job)
        if len(runs) == 1:
            return format_html('<span class="qw-muted">{}</span>', _("no retries"))
        items = format_html_join("", "<li>{}</li>", ((job_link(run, job),) for run in runs))
        return format_html('<ol class="qw-chain">{}</ol>', items)

    @admin.display(description=_("worker"))
    def worker_display(self, job: WorkerJob) -> SafeString | str:
        if not job.worker:
            return ""
        name = job.worker.rsplit(":", 1)[0]  # host:pid:slot -> the runworkers parent host:pid
        process = WorkerProcess.objects.filter(name=name).first()
        if process is None:
            note = _("its runworkers process has stopped")
        else:
            age = format_duration(timezone.now() - process.heartbeat)
            alive = WorkerProcess.objects.alive().filter(pk=process.pk).exists()
            note = (
                _("runworkers alive, last heartbeat %(age)s ago")
                if alive
                else _("runworkers silent, last heartbeat %(age)s ago")
            ) % {"age": age}
        return format_html('<code>{}</code> <span class="qw-muted">({})</span>', job.worker, note)

    @admin.display(description=_("next runs"))
    def next_runs_display(self, job: WorkerJob) -> SafeString | str:
        if not job.cron_schedule:
            return ""
        zone = conf.cron_time_zone
        runs = (
            (formats.date_format(timezone.localtime(run), "DATETIME_FORMAT"),)
            for run in next_runs(job.cron_schedule)
        )
        items = format_html_join("", "<li>{}</li>", runs)
        return format_html(
            '<ul class="qw-runs">{}</ul><span class="qw-muted">{}</span>',
            items,
            _("Schedule read in the %(zone)s time zone.") % {"zone": zone.key},
        )

    # Actions: each reports what it changed and why it skipped the rest.

    @admin.action(description=_("Run now"), permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: WorkerJobQuerySet) -> None:
        now = timezone.now()
        statuses = _statuses(queryset)
        already_due = queryset.scheduled().filter(due__lte=now).count()
        with transaction.atomic(using=router.db_for_write(WorkerJob)):
            moved = queryset.scheduled().filter(due__gt=now)
            queues = set(moved.values_list("queue", flat=True).distinct())
            changed = moved.update(due=now, updated_at=now)
            _wake_workers(queues, router.db_for_write(WorkerJob))
        skipped = [
            (already_due, _("was already due"), _("were already due")),
            *_not_in(
                statuses, [Status.SCHEDULED], _("had already started"), _("had already started")
            ),
        ]
        done = ngettext("Set %(n)d job to run now", "Set %(n)d jobs to run now", changed) % {
            "n": changed
        }
        self._report(request, done, changed, skipped)

    @admin.action(description=_("Retry"), permissions=["change"])
    def retry(self, request: HttpRequest, queryset: WorkerJobQuerySet) -> None:
        statuses = _statuses(queryset)
        retryable = queryset.filter(status__in=[Status.FAILED, Status.CANCELLED]).order_by("pk")
        candidates = list(retryable[: RETRY_LIMIT + 1])
        over_limit = max(len(candidates) - RETRY_LIMIT, 0)
        candidates = candidates[:RETRY_LIMIT]
        pending = set(
            WorkerJob.objects.filter(
                rescheduled_from__in=[job.pk for job in candidates],
                status__in=[Status.SCHEDULED, Status.RUNNING],
            ).values_list("rescheduled_from", flat=True)
        )
        unregistered = [job for job in candidates if job.type not in registry]
        now = timezone.now()
        retried = []
        with transaction.atomic(using=router.db_for_write(WorkerJob)):
            for job in candidates:
                if job.pk not in pending and job.type in registry:
                    retried.append(resubmit(job, due=now))
        skipped = [
            *_not_in(
                statuses,
                [Status.FAILED, Status.CANCELLED],
                _("had not failed or been cancelled"),
                _("had not failed or been cancelled"),
            ),
            (
                len(pending),
                _("already had a retry waiting or running"),
                _("already had a retry waiting or running"),
            ),
            (
                len(unregistered),
                _("has a type no longer registered"),
                _("have a type no longer registered"),
            ),
            (
                over_limit,
                _("is past the %d retried at once") % RETRY_LIMIT,
                _("are past the %d retried at once") % RETRY_LIMIT,
            ),
        ]
        ids = ", ".join(f"#{job.pk}" for job in retried[:10]) + (", …" if len(retried) > 10 else "")
        done = ngettext("Retried %(n)d job", "Retried %(n)d jobs", len(retried)) % {
            "n": len(retried)
        }
        if retried:
            done += " " + str(_("as %(ids)s")) % {"ids": ids}
        self._report(request, done, len(retried), skipped)

    @admin.action(description=_("Cancel"), permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: WorkerJobQuerySet) -> None:
        statuses = _statuses(queryset)
        now = timezone.now()
        with transaction.atomic(using=router.db_for_write(WorkerJob)):
            cancelled = queryset.cancel(CANCELLED_BY_OPERATOR)
            running = queryset.running()
            already_asked = running.filter(cancel_requested__isnull=False).count()
            asked = running.filter(cancel_requested__isnull=True).update(
                cancel_requested=now, updated_at=now
            )
        done = ngettext("Cancelled %(n)d job", "Cancelled %(n)d jobs", cancelled) % {"n": cancelled}
        if asked:
            done += "; " + ngettext(
                "asked %(n)d running job to stop (its runworkers ends it within seconds)",
                "asked %(n)d running jobs to stop (their runworkers end them within seconds)",
                asked,
            ) % {"n": asked}
        skipped = [
            (already_asked, _("was already asked to stop"), _("were already asked to stop")),
            *_not_in(
                statuses,
                [Status.SCHEDULED, Status.RUNNING],
                _("had already finished"),
                _("had already finished"),
            ),
        ]
        self._report(request, done, cancelled + asked, skipped)

    def _report(
        self,
        request: HttpRequest,
        done: str,
        changed: int,
        skipped: Iterable[tuple[int, Any, Any]],
    ) -> None:
        """Tell the operator what changed, and why the other rows did not."""
        reasons = [
            ngettext("%(n)d that %(one)s", "%(n)d that %(many)s", count)
            % {"n": count, "one": one, "many": many}
            for count, one, many in skipped
            if count
        ]
        message = done + ("; " + str(_("skipped")) + " " + _join(reasons) if reasons else "") + "."
        self.message_user(request, message, messages.SUCCESS if changed else messages.WARNING)


def _statuses(queryset: QuerySet[Any]) -> Counter[str]:
    """How many of the selected rows are in each status."""
    rows = queryset.order_by().values_list("status").annotate(n=Count("pk"))
    return Counter(dict(rows))


def _not_in(
    statuses: Counter[str], wanted: list[str], one: Any, many: Any
) -> list[tuple[int, Any, Any]]:
    count = sum(n for status, n in statuses.items() if status not in wanted)
    return [(count, one, many)]


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " " + str(_("and")) + " " + parts[-1]


# --- runworkers processes -----------------------------------------------------------------


@admin.register(WorkerProcess)
class WorkerProcessAdmin(admin.ModelAdmin):
    """The runworkers parents: read-only, written by their heartbeats."""

    list_display = ["name", "alive", "workers", "queues_display", "version", "started", "heartbeat"]
    ordering = ["-heartbeat"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("alive"), boolean=True)
    def alive(self, process: WorkerProcess) -> bool:
        return process.heartbeat >= timezone.now() - conf.lease

    @admin.display(description=_("queues"))
    def queues_display(self, process: WorkerProcess) -> str:
        return process.queues.replace(",", ", ") or str(_("all"))
