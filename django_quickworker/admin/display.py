"""A job's values as HTML for the list and the job page, every value escaped."""

import json
from datetime import datetime, timedelta
from typing import Any

from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_quickworker.conf import conf
from django_quickworker.models import Status, WorkerJob, WorkerProcess
from django_quickworker.schedule import next_runs
from django_quickworker.status import format_duration

JSON_DISPLAY_LIMIT = 100_000  # characters of data or result shown on a job's page
CHAIN_LIMIT = 25  # retries shown each way from a job
NEXT_RUNS = 3  # upcoming cron ticks shown on a job's page
PROCESSES_SHOWN = 5  # runworkers of a job's host named on its page

ALIVE = _("runworkers %(name)s alive, last heartbeat %(age)s ago")
SILENT = _("runworkers %(name)s silent, last heartbeat %(age)s ago")


def muted(text: Any) -> SafeString:
    return format_html('<span class="qw-muted">{}</span>', text)


def status_badge(status: str) -> SafeString:
    return format_html(
        '<span class="qw-badge qw-status-{}">{}</span>', status, Status(status).label
    )


def status_of(job: WorkerJob) -> SafeString:
    """The job's badge, saying so when a running job has been asked to stop."""
    badge = status_badge(job.status)
    if job.status == Status.RUNNING and job.cancel_requested:
        return format_html("{} {}", badge, muted(_("stopping")))
    return badge


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON in a <pre>, escaped; shortened past JSON_DISPLAY_LIMIT."""
    if value is None:
        return muted(_("none"))
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


def duration_of(job: WorkerJob, now: datetime | None = None) -> timedelta | None:
    if job.started is None:
        return None
    return (job.finished or now or timezone.now()) - job.started


def attempts_of(job: WorkerJob) -> str:
    """The run's number, out of the runs its retry policy allows."""
    if not job.auto_reschedule_on_failure:
        return str(job.attempt)
    return f"{job.attempt}/{job.max_attempts}"


def progress_bar(job: WorkerJob) -> SafeString | str:
    """A running job's progress: a bar when it reports a total, else its count and message."""
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
    return format_html('<progress class="qw-progress"></progress> {} {}', f"{current:g}", message)


def traceback_of(job: WorkerJob) -> SafeString:
    if not job.error_traceback:
        return muted(_("none"))
    return format_html('<pre class="qw-pre qw-traceback">{}</pre>', job.error_traceback)


def job_link(job: WorkerJob, current: WorkerJob | None = None) -> SafeString:
    label = format_html("#{} {} {}", job.pk, status_badge(job.status), _when(job))
    if current is not None and job.pk == current.pk:
        return format_html("<strong>{}</strong> {}", label, muted(_("this")))
    url = reverse("admin:quickworker_workerjob_change", args=[job.pk])
    return format_html('<a href="{}">{}</a>', url, label)


def _when(job: WorkerJob) -> str:
    """When a run finished, started or is due, whichever it has got to."""
    when = job.finished or job.started or job.due
    local = timezone.localtime(when) if timezone.is_aware(when) else when
    return formats.date_format(local, "DATETIME_FORMAT")


def chain_of(job: WorkerJob) -> SafeString:
    """The job's retry chain, each run a link but this one."""
    runs = job.retry_chain(CHAIN_LIMIT)
    if len(runs) == 1:
        return muted(_("no retries"))
    items = format_html_join("", "<li>{}</li>", ((job_link(run, job),) for run in runs))
    return format_html('<ol class="qw-chain">{}</ol>', items)


def worker_of(job: WorkerJob) -> SafeString | str:
    """The worker that ran the job, and whether the runworkers of its host are alive."""
    if not job.worker:
        return ""
    # Workers are named host:pid:slot after their own pid, not their parent's: show
    # the runworkers processes of that host.
    host = job.worker.split(":", 1)[0]
    now = timezone.now()
    processes = WorkerProcess.objects.filter(name__startswith=f"{host}:").order_by("name")
    notes = [
        str(ALIVE if process.is_alive(now) else SILENT)
        % {"name": process.name, "age": format_duration(now - process.heartbeat)}
        for process in processes[:PROCESSES_SHOWN]
    ]
    note = "; ".join(notes) or str(_("no runworkers on %(host)s now")) % {"host": host}
    return format_html("<code>{}</code> {}", job.worker, muted(f"({note})"))


def next_runs_of(job: WorkerJob) -> SafeString | str:
    """A cron job's next few ticks, and the time zone its schedule is read in."""
    if not job.cron_schedule:
        return ""
    zone = conf.cron_time_zone
    try:
        upcoming = next_runs(job.cron_schedule, timezone.now(), zone, NEXT_RUNS)
    except (ValueError, KeyError) as error:  # a schedule written by an older version
        return format_html('<span class="qw-alert">{}</span>', str(error))
    runs = ((formats.date_format(timezone.localtime(run), "DATETIME_FORMAT"),) for run in upcoming)
    return format_html(
        '<ul class="qw-runs">{}</ul>{}',
        format_html_join("", "<li>{}</li>", runs),
        muted(_("Schedule read in the %(zone)s time zone.") % {"zone": zone.key}),
    )
