"""The admin: watch the queue and steer it.

Job rows are read-only here: every change goes through the lifecycle's own paths — the add
form calls ``submit_job``; the actions (run now, retry, cancel) use the queryset methods,
``resubmit`` and ``cancel_requested`` — so the admin can never put a row in a state the
workers do not expect. Nothing here counts, sorts or SELECT DISTINCTs a whole table of a
million rows on a page view: filters offer fixed choices, counts stop early
(``status.count_rows``) and the date hierarchy reads one MIN per period it offers; each
of these queries is served by one of WorkerJob's indexes (status, due, tag, type, queue).
"""

import json
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.paginator import Paginator
from django.db import router, transaction
from django.db.models import Count, Min, Q, QuerySet
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
from django_quickworker.schedule import next_cron_due, validate_cron
from django_quickworker.status import RowCount, count_rows, format_duration, summarize
from django_quickworker.submit import build_job, resubmit, submit_job, wake_workers

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
    """The queues of the registered job types, those runworkers serve, and "default"."""

    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        served = WorkerProcess.objects.exclude(queues="").values_list("queues", flat=True)
        queues = {"default"} | {job_type.queue for job_type in registry}
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
    def get_ordering_field(self, field_name: Any) -> Any:
        """Sort only by the columns an index serves, even when the URL asks for another."""
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    @cached_property
    def date_drilldown(self) -> dict[str, Any]:
        """Django's date hierarchy without its SELECT DISTINCT over every matching row.

        The years, months or days offered are found by a loose index scan: one MIN(due)
        per period that holds a job, each answered at once by an index on ``due``. They
        hold jobs, though with other filters on, maybe none that match.
        """
        name = self.date_hierarchy
        chosen = [self.params.get(f"{name}__{part}") for part in ("year", "month", "day")]
        year, month, day = (int(value) if value else None for value in chosen)

        def link(**parts: int) -> str:
            filters = {f"{name}__{part}": value for part, value in parts.items()}
            return str(self.get_query_string(filters, [f"{name}__"]))

        if year and month and day:
            moment = date(year, month, day)
            back = {
                "link": link(year=year, month=month),
                "title": capfirst(formats.date_format(moment, "YEAR_MONTH_FORMAT")),
            }
            title = capfirst(formats.date_format(moment, "MONTH_DAY_FORMAT"))
            return {"show": True, "back": back, "choices": [{"title": title}]}
        drill = year is None  # like Django, step down by itself while one choice is left
        if year is None:
            years = self._periods("year")
            if len(years) != 1:
                choices = [{"link": link(year=y.year), "title": str(y.year)} for y in years]
                return {"show": True, "back": None, "choices": choices}
            year = years[0].year
        if month is None:
            months = self._periods("month", date(year, 1, 1), date(year + 1, 1, 1))
            if len(months) != 1 or not drill:
                back = {"link": link(), "title": str(_("All dates"))}
                choices = [
                    {
                        "link": link(year=year, month=m.month),
                        "title": capfirst(formats.date_format(m, "YEAR_MONTH_FORMAT")),
                    }
                    for m in months
                ]
                return {"show": True, "back": back, "choices": choices}
            month = months[0].month
        end = date(year + month // 12, month % 12 + 1, 1)
        days = self._periods("day", date(year, month, 1), end)
        choices = [
            {
                "link": link(year=year, month=month, day=d.day),
                "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT")),
            }
            for d in days
        ]
        return {
            "show": True,
            "back": {"link": link(year=year), "title": str(year)},
            "choices": choices,
        }

    def _periods(self, unit: str, start: date | None = None, end: date | None = None) -> list[date]:
        """The first day of each year, month or day from ``start`` to ``end`` holding a job."""
        found: list[date] = []
        jobs = self.root_queryset.order_by()
        if end is not None:
            jobs = jobs.filter(**{f"{self.date_hierarchy}__lt": _local_midnight(end)})
        while len(found) < MAX_PERIODS:
            rows = jobs
            if start is not None:
                rows = rows.filter(**{f"{self.date_hierarchy}__gte": _local_midnight(start)})
            first = rows.aggregate(first=Min(self.date_hierarchy))["first"]
            if first is None:
                break
            day = (timezone.localtime(first) if timezone.is_aware(first) else first).date()
            period = {"year": day.replace(month=1, day=1), "month": day.replace(day=1)}
            found.append(period.get(unit, day))
            start = _following(found[-1], unit)
        return found


MAX_PERIODS = 40  # years, months or days one level of the date hierarchy offers


def _local_midnight(day: date) -> datetime:
    midnight = datetime(day.year, day.month, day.day)
    return timezone.make_aware(midnight) if settings.USE_TZ else midnight


def _following(period: date, unit: str) -> date:
    if unit == "year":
        return date(period.year + 1, 1, 1)
    if unit == "month":
        return date(period.year + period.month // 12, period.month % 12 + 1, 1)
    return period + timedelta(days=1)


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


def moment(when: datetime | None) -> SafeString:
    """A compact local time for the list ("Nov 27, 20:12:05"), the full one on hover."""
    if when is None:
        return format_html("{}", "-")
    local = timezone.localtime(when) if timezone.is_aware(when) else when
    pattern = "M j, H:i:s" if local.year == timezone.localdate().year else "M j Y, H:i"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        when.isoformat(),
        formats.date_format(local, "DATETIME_FORMAT"),
        formats.date_format(local, pattern),
    )


def job_link(job: WorkerJob, current: WorkerJob | None = None) -> SafeString:
    label = format_html("#{} {} {}", job.pk, status_badge(job.status), _when(job))
    if current is not None and job.pk == current.pk:
        return format_html('<strong>{}</strong> <span class="qw-muted">{}</span>', label, _("this"))
    url = reverse("admin:quickworker_workerjob_change", args=[job.pk])
    return format_html('<a href="{}">{}</a>', url, label)


def _when(job: WorkerJob) -> str:
    """When a run finished, started or is due, whichever it has got to."""
    when = job.finished or job.started or job.due
    local = timezone.localtime(when) if timezone.is_aware(when) else when
    return formats.date_format(local, "DATETIME_FORMAT")


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


ALIVE = _("runworkers %(name)s alive, last heartbeat %(age)s ago")
SILENT = _("runworkers %(name)s silent, last heartbeat %(age)s ago")


# --- Adding a job: a form over submit_job -------------------------------------------------


class SubmitJobForm(forms.ModelForm):
    """Submit a job through ``submit_job``, so every rule that applies in code applies here."""

    type = forms.ChoiceField(label=_("Type"), choices=())
    tag = forms.CharField(
        label=_("Tag"),
        max_length=255,
        help_text=_("Scheduled jobs with the same tag are replaced, unless you allow both."),
    )
    data = forms.CharField(  # type: ignore[assignment]  # a field, though BaseForm.data is the input
        label=_("Data"),
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 8, "class": "vLargeTextField qw-code"}),
        help_text=_('JSON, e.g. {"email": "a@example.com"}; empty means {}.'),
    )
    due = forms.SplitDateTimeField(
        label=_("Due"),
        required=False,
        widget=AdminSplitDateTime,
        help_text=_("Leave due and delay empty to run it now (or at the next cron tick)."),
    )
    delay = forms.FloatField(
        label=_("Delay"), required=False, min_value=0, help_text=_("Seconds from now.")
    )
    cron = forms.CharField(
        label=_("Cron schedule"),
        required=False,
        max_length=100,
        help_text=_(
            "Repeat on this schedule: 5 fields, 6 with seconds first, or @hourly; read in "
            "QUICKWORKER['CRON_TIME_ZONE'] (default: TIME_ZONE)."
        ),
    )
    queue = forms.CharField(
        label=_("Queue"), required=False, max_length=100, help_text=_("Empty: the type's queue.")
    )
    priority = forms.IntegerField(
        label=_("Priority"),
        required=False,
        help_text=_("Higher runs first. Empty: the type's priority."),
    )
    max_attempts = forms.IntegerField(
        label=_("Max attempts"),
        required=False,
        min_value=1,
        help_text=_("More than 1 retries failed runs. Empty: the type's setting."),
    )
    on_duplicate_tag = forms.ChoiceField(
        label=_("If the tag is taken"),
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

    def clean_cron(self) -> str:
        cron = self.cleaned_data["cron"].strip()
        try:
            return validate_cron(cron) if cron else ""
        except InvalidCronSchedule as error:
            raise forms.ValidationError(str(error), code="invalid_cron") from None

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
        "due_at",
        "started_at",
        "finished_at",
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

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        """Newest first; by due time within a date of the hierarchy, which the due index
        serves (ids and due times need not follow each other)."""
        drilled = any(key.startswith("due__") for key in request.GET)
        return ("-due", "-id") if drilled else ("-id",)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # A submitted job's page is read-only: there is nothing to go on editing.
        context = {"show_save_and_continue": False, **(extra_context or {})}
        return super().add_view(request, form_url, context)

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
        offered = [(name, allowed.get(name)) for name, applies in applicable.items() if applies]
        return [(name, _action_label(action)) for name, action in offered if action is not None]

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

    @admin.display(description=_("due"), ordering="due")
    def due_at(self, job: WorkerJob) -> SafeString:
        return moment(job.due)

    @admin.display(description=_("started"))
    def started_at(self, job: WorkerJob) -> SafeString:
        return moment(job.started)

    @admin.display(description=_("finished"))
    def finished_at(self, job: WorkerJob) -> SafeString:
        return moment(job.finished)

    @admin.display(description=_("duration"))
    def duration(self, job: WorkerJob) -> str:
        elapsed = duration_of(job)
        return "" if elapsed is None else format_duration(elapsed)

    @admin.display(description=_("attempt"))
    def attempts(self, job: WorkerJob) -> str:
        """The run's number, out of the runs its retry policy allows."""
        if not job.auto_reschedule_on_failure:
            return str(job.attempt)
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
        # Workers are named host:pid:slot after their own pid, not their parent's: show
        # the runworkers processes of that host.
        host = job.worker.split(":", 1)[0]
        now = timezone.now()
        processes = WorkerProcess.objects.filter(name__startswith=f"{host}:").order_by("name")
        notes = [
            str(ALIVE if now - process.heartbeat <= conf.lease else SILENT)
            % {"name": process.name, "age": format_duration(now - process.heartbeat)}
            for process in processes[:5]
        ]
        note = "; ".join(notes) or str(_("no runworkers on %(host)s now")) % {"host": host}
        return format_html('<code>{}</code> <span class="qw-muted">({})</span>', job.worker, note)

    @admin.display(description=_("next runs"))
    def next_runs_display(self, job: WorkerJob) -> SafeString | str:
        if not job.cron_schedule:
            return ""
        zone = conf.cron_time_zone
        try:
            upcoming = next_runs(job.cron_schedule)
        except (ValueError, KeyError) as error:  # a schedule written by an older version
            return format_html('<span class="qw-alert">{}</span>', str(error))
        runs = (
            (formats.date_format(timezone.localtime(run), "DATETIME_FORMAT"),) for run in upcoming
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
            wake_workers(queues, router.db_for_write(WorkerJob))
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
        candidates = list(retryable[:RETRY_LIMIT])
        over_limit = statuses[Status.FAILED] + statuses[Status.CANCELLED] - len(candidates)
        pending = set(
            WorkerJob.objects.filter(
                rescheduled_from__in=[job.pk for job in candidates],
                status__in=[Status.SCHEDULED, Status.RUNNING],
            ).values_list("rescheduled_from", flat=True)
        )
        unregistered = [
            job for job in candidates if job.pk not in pending and job.type not in registry
        ]
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


def _action_label(action: Any) -> str:
    """An admin action's description: an attribute from Django 6.1, a tuple's third item before."""
    return str(getattr(action, "description", None) or action[2])
