"""A job's values as HTML for the list and the job page, every value escaped.

Where there is nothing to show, a helper returns ``EMPTY``, the one marker for a value
that is not there (also the ModelAdmins' ``empty_value_display``).
"""

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from django_quickworker.conf import conf
from django_quickworker.cron import SCHEDULE_CHANGED
from django_quickworker.models import Backoff, Status, WorkerJob, WorkerProcess
from django_quickworker.schedule import format_duration, next_runs, wall_time
from django_quickworker.submit import CANCELLED_BY_NEW_JOB

EMPTY = "—"  # the one marker for a value that is not there
JSON_DISPLAY_LIMIT = 100_000  # characters of data or result shown on a job's page
TAG_SHOWN = 40  # characters of a tag shown in the list
CHAIN_LIMIT = 25  # retries shown each way from a job
NEXT_RUNS = 3  # upcoming cron ticks shown on a job's page
FULL_TIME = "M j, Y, H:i:s"
SHORT_TIME = "M j, H:i:s"  # in the list, for times of this year
REPLACED = {CANCELLED_BY_NEW_JOB, SCHEDULE_CHANGED}  # the reasons that come with a successor

ALIVE = _("runworkers %(name)s alive, last heartbeat %(age)s ago")
SILENT = _("runworkers %(name)s silent, last heartbeat %(age)s ago")


def muted(text: Any) -> SafeString:
    return format_html('<span class="qw-muted">{}</span>', text)


def status_badge(status: str) -> SafeString:
    return format_html(
        '<span class="qw-badge qw-status-{}">{}</span>', status, Status(status).label
    )


def status_of(job: WorkerJob) -> SafeString:
    """The job's badge, its run out of those allowed, and a running job's progress.

    The wrapper carries the id and status that the live updates (admin-live.js) watch.
    """
    badge = [status_badge(job.status)]
    if job.status == Status.RUNNING and job.cancel_requested:
        badge.append(muted(_("stopping")))
    details = []  # a line below the badge
    if job.auto_reschedule_on_failure or job.attempt > 1:
        details.append(muted(_("run %(run)s") % {"run": attempts_of(job)}))
    progress = progress_bar(job)
    if progress is not None:
        details.append(progress)
    line = format_html_join(" ", "{}", ((part,) for part in details))
    return format_html(
        '<span class="qw-status" data-qw-job="{}" data-qw-status="{}">{}{}</span>',
        job.pk,
        job.status,
        format_html_join(" ", "{}", ((part,) for part in badge)),
        format_html('<span class="qw-status-line">{}</span>', line) if details else "",
    )


def job_of(job: WorkerJob) -> SafeString:
    """The job's type, with its tag (shortened; whole on hover) and user below."""
    tag = job.tag if len(job.tag) <= TAG_SHOWN else job.tag[: TAG_SHOWN - 1] + "…"
    user = format_html(" · {}", job.user) if job.user_id is not None else ""
    return format_html(
        '<span class="qw-type">{}</span><span class="qw-tag" title="{}">{}{}</span>',
        job.type,
        job.tag,
        tag,
        user,
    )


def pretty_json(value: Any) -> SafeString | str:
    """``value`` as indented JSON in a <pre>, escaped; shortened past JSON_DISPLAY_LIMIT."""
    if value is None:
        return EMPTY
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    if len(text) > JSON_DISPLAY_LIMIT:
        note = _("… shortened: %(size)s characters in all.") % {"size": f"{len(text):,}"}
        text = f"{text[:JSON_DISPLAY_LIMIT]}\n{note}"
    return format_html('<pre class="qw-pre">{}</pre>', text)


def moment(when: datetime | None, pattern: str = FULL_TIME) -> SafeString | str:
    """A local time to the second, in ``pattern``; with the year on hover."""
    if when is None:
        return EMPTY
    local = wall_time(when)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        when.isoformat(),
        formats.date_format(local, FULL_TIME),
        formats.date_format(local, pattern),
    )


def short_moment(when: datetime | None) -> SafeString | str:
    """A compact time for the list: "20:12:05" today, "Nov 27, 20:12:05" this year, else
    the whole date; the whole date and time on hover."""
    if when is None:
        return EMPTY
    local = wall_time(when)
    today = wall_time(timezone.now()).date()
    if local.date() == today:
        return moment(when, "H:i:s")
    return moment(when, SHORT_TIME if local.year == today.year else FULL_TIME)


def time_field(attribute: str, label: Any) -> Callable[[Any, Any], SafeString | str]:
    """A job page field showing the time ``attribute`` to the second (Django's own has none)."""

    @admin.display(description=label)
    def show(model_admin: Any, obj: Any) -> SafeString | str:
        return moment(getattr(obj, attribute))

    return show


def duration_of(job: WorkerJob, now: datetime | None = None) -> timedelta | None:
    if job.started is None:
        return None
    return (job.finished or now or timezone.now()) - job.started


def attempts_of(job: WorkerJob) -> str:
    """The run's number, out of the runs its retry policy allows."""
    if not job.auto_reschedule_on_failure:
        return str(job.attempt)
    return f"{job.attempt}/{job.max_attempts}"


def progress_bar(job: WorkerJob) -> SafeString | None:
    """A running job's progress: a bar when it reports a total, else its count and message."""
    progress = job.progress
    if job.status != Status.RUNNING or not isinstance(progress, dict):
        return None
    current, total = progress.get("current"), progress.get("total")
    message = str(progress.get("message") or "")
    if not isinstance(current, int | float) or isinstance(current, bool):
        return format_html("{}", message) if message else None
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


def traceback_of(job: WorkerJob) -> SafeString | str:
    if not job.error_traceback:
        return EMPTY
    return format_html('<pre class="qw-pre qw-traceback">{}</pre>', job.error_traceback)


def job_link(job: WorkerJob, current: WorkerJob | None = None) -> SafeString:
    when = job.finished or job.started or job.due  # whichever the run has got to
    label = format_html("#{} {} {}", job.pk, status_badge(job.status), moment(when))
    if current is not None and job.pk == current.pk:
        return format_html("<strong>{}</strong> {}", label, muted(_("this")))
    url = reverse("admin:quickworker_workerjob_change", args=[job.pk])
    return format_html('<a href="{}">{}</a>', url, label)


def chain_of(job: WorkerJob) -> SafeString:
    """The job's retry chain, each run a link but this one."""
    runs = job.retry_chain(CHAIN_LIMIT)
    if len(runs) == 1:
        return muted(_("no retries"))
    items = format_html_join("", "<li>{}</li>", ((job_link(run, job),) for run in runs))
    return format_html('<ol class="qw-chain">{}</ol>', items)


def replacement_of(job: WorkerJob) -> SafeString | str:
    """For a job cancelled because another took its tag, a link to that job."""
    reason = job.result.get("error") if isinstance(job.result, dict) else None
    successor = job.replacement() if reason in REPLACED else None
    return EMPTY if successor is None else job_link(successor)


def retry_policy_of(job: WorkerJob) -> SafeString:
    """What happens when a run fails, in words."""
    if not job.auto_reschedule_on_failure:
        return format_html("{}", _("No automatic retry: a failed run stays failed."))
    delay = format_duration(job.auto_reschedule_on_failure_delay)
    if job.retry_backoff == Backoff.EXPONENTIAL:
        words = _("Up to %(runs)d runs; the first retry after %(delay)s, doubling each time.")
    else:
        words = _("Up to %(runs)d runs, %(delay)s apart.")
    return format_html("{}", words % {"runs": job.max_attempts, "delay": delay})


def retention_of(job: WorkerJob) -> SafeString:
    """How long the row is kept, in words."""
    if job.persistent:
        return format_html("{}", _("Persistent: kept forever, cleanup never removes it."))
    if job.remove_at is not None:
        return format_html("{} {}", _("Removed by cleanup after"), moment(job.remove_at))
    if job.remove_delay is not None:
        words = _("Kept %(delay)s after it finishes, then removed by cleanup.")
        return format_html("{}", words % {"delay": format_duration(job.remove_delay)})
    words = _("Kept %(succeeded)s after it succeeds, %(failed)s after it fails or is cancelled.")
    return format_html(
        "{}",
        words
        % {
            "succeeded": format_duration(conf.retain_succeeded),
            "failed": format_duration(conf.retain_failed),
        },
    )


def worker_of(job: WorkerJob) -> SafeString | str:
    """The worker that ran the job, and whether the runworkers it belongs to is alive."""
    if not job.worker:
        return EMPTY
    # Workers are named host:pid:token:slot, and their runworkers host:pid:token after its
    # own pid: the token, drawn at each start, names that runworkers alone.
    parts = job.worker.split(":")
    if len(parts) != 4:  # not a name runworkers gave: nothing to look up
        return format_html("<code>{}</code>", job.worker)
    host, _pid, token, _slot = parts
    now = timezone.now()
    process = WorkerProcess.objects.filter(name__endswith=f":{token}").first()
    if process is None:
        note = str(_("its runworkers on %(host)s has gone")) % {"host": host}
    else:
        state = ALIVE if process.is_alive(now) else SILENT
        note = str(state) % {"name": process.name, "age": format_duration(now - process.heartbeat)}
    return format_html("<code>{}</code> {}", job.worker, muted(f"({note})"))


def next_runs_of(job: WorkerJob) -> SafeString | str:
    """A cron job's next few ticks, and the time zone its schedule is read in."""
    if not job.cron_schedule:
        return EMPTY
    zone = conf.cron_time_zone
    try:
        upcoming = next_runs(job.cron_schedule, timezone.now(), zone, NEXT_RUNS)
    except (ValueError, KeyError) as error:  # a schedule written by an older version
        return format_html('<span class="qw-alert">{}</span>', str(error))
    return format_html(
        '<ul class="qw-runs">{}</ul>{}',
        format_html_join("", "<li>{}</li>", ((moment(run),) for run in upcoming)),
        muted(_("Schedule read in the %(zone)s time zone.") % {"zone": zone.key}),
    )
