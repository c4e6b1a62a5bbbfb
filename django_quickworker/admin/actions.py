"""The job list's actions: each calls one WorkerJob queryset method, then tells the operator
what changed and why the other selected rows did not."""

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, cast

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_quickworker.models import Status, WorkerJob, WorkerJobQuerySet

CANCELLED_BY_OPERATOR = "Cancelled by an operator."
RETRY_LIMIT = 1000  # jobs one "retry" action resubmits; each is a row written
IDS_SHOWN = 10  # retries named in the message

Skipped = tuple[int, Any, Any]  # how many rows, why (one row), why (several)


@admin.action(description=_("Run now"), permissions=["change"])
def run_now(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    jobs = _jobs(queryset)
    statuses = _statuses(jobs)
    already_due = jobs.due().count()
    changed = jobs.run_now()
    skipped = [
        (already_due, _("was already due"), _("were already due")),
        _not_in(statuses, [Status.SCHEDULED], _("had already started")),
    ]
    done = ngettext("Set %(n)d job to run now", "Set %(n)d jobs to run now", changed) % {
        "n": changed
    }
    _report(modeladmin, request, done, changed, skipped)


@admin.action(description=_("Retry"), permissions=["change"])
def retry(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    jobs = _jobs(queryset)
    statuses = _statuses(jobs)
    retries = jobs.retry(RETRY_LIMIT)
    written = retries.written
    skipped = [
        _not_in(statuses, [Status.FAILED, Status.CANCELLED], _("had not failed or been cancelled")),
        (
            retries.already_pending,
            _("already had a retry waiting or running"),
            _("already had a retry waiting or running"),
        ),
        (
            retries.unregistered,
            _("has a type no longer registered"),
            _("have a type no longer registered"),
        ),
        (
            retries.over_limit,
            _("is past the %d retried at once") % RETRY_LIMIT,
            _("are past the %d retried at once") % RETRY_LIMIT,
        ),
    ]
    done = ngettext("Retried %(n)d job", "Retried %(n)d jobs", len(written)) % {"n": len(written)}
    if written:
        ids = ", ".join(f"#{job.pk}" for job in written[:IDS_SHOWN])
        ids += ", …" if len(written) > IDS_SHOWN else ""
        done += " " + str(_("as %(ids)s")) % {"ids": ids}
    _report(modeladmin, request, done, len(written), skipped)


@admin.action(description=_("Cancel"), permissions=["change"])
def cancel(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    jobs = _jobs(queryset)
    statuses = _statuses(jobs)
    already_asked = jobs.running().filter(cancel_requested__isnull=False).count()
    cancelled, asked = jobs.request_cancel(CANCELLED_BY_OPERATOR)
    done = ngettext("Cancelled %(n)d job", "Cancelled %(n)d jobs", cancelled) % {"n": cancelled}
    if asked:
        done += "; " + ngettext(
            "asked %(n)d running job to stop (its runworkers ends it within seconds)",
            "asked %(n)d running jobs to stop (their runworkers end them within seconds)",
            asked,
        ) % {"n": asked}
    skipped = [
        (already_asked, _("was already asked to stop"), _("were already asked to stop")),
        _not_in(statuses, [Status.SCHEDULED, Status.RUNNING], _("had already finished")),
    ]
    _report(modeladmin, request, done, cancelled + asked, skipped)


#: The rows each action can change; a job's page offers the actions whose rows hold the job.
APPLIES_TO: dict[str, Callable[[WorkerJobQuerySet], WorkerJobQuerySet]] = {
    "run_now": WorkerJobQuerySet.scheduled,
    "retry": WorkerJobQuerySet.retryable,
    "cancel": WorkerJobQuerySet.cancellable,
}


def applicable_actions(job_id: Any) -> list[str]:
    """The names of the actions that would change the job ``job_id``."""
    job = WorkerJob.objects.filter(pk=job_id)
    return [name for name, rows in APPLIES_TO.items() if rows(job).exists()]


def _report(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    done: str,
    changed: int,
    skipped: Iterable[Skipped],
) -> None:
    """Tell the operator what changed, and why the other rows did not."""
    reasons = [
        ngettext("%(n)d that %(one)s", "%(n)d that %(many)s", count)
        % {"n": count, "one": one, "many": many}
        for count, one, many in skipped
        if count
    ]
    message = done + ("; " + str(_("skipped")) + " " + _join(reasons) if reasons else "") + "."
    modeladmin.message_user(request, message, messages.SUCCESS if changed else messages.WARNING)


def _jobs(queryset: QuerySet[Any]) -> WorkerJobQuerySet:
    """The selected rows, with WorkerJob's queryset methods: the admin passes its manager's."""
    return cast(WorkerJobQuerySet, queryset)


def _statuses(queryset: QuerySet[Any]) -> Counter[str]:
    """How many of the selected rows are in each status."""
    rows = queryset.order_by().values_list("status").annotate(n=Count("pk"))
    return Counter(dict(rows))


def _not_in(statuses: Counter[str], wanted: list[str], reason: Any) -> Skipped:
    """The selected rows in none of the ``wanted`` statuses, skipped for ``reason``."""
    return (sum(n for status, n in statuses.items() if status not in wanted), reason, reason)


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " " + str(_("and")) + " " + parts[-1]
