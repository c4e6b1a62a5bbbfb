"""Charts of the admin's summary: jobs finished per minute over the last hour and per hour
over the last day (succeeded and failed, stacked), and how long they waited in the queue,
as SVG rendered on the server (no JavaScript, no asset to load).

The queries stay cheap on millions of rows. A window of up to ``READ_LIMIT`` finished jobs
is read whole, in one query, and counted and averaged exactly. One of up to ``GROUP_LIMIT``
is counted exactly by one GROUP BY that reads only the (status, finished) index; a larger
one bucket by bucket, each count stopping at ``status.COUNT_LIMIT`` (past it, PostgreSQL's
estimate). Then each bucket's wait is the mean over ``WAIT_SAMPLE`` of its jobs (all of them in a
quieter bucket), so that the rows themselves are read a few at a time.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from django.db import router
from django.db.models import Count
from django.db.models.functions import Trunc
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from django_quickworker.models import Status, WorkerJob, WorkerJobQuerySet
from django_quickworker.overview import count_rows
from django_quickworker.schedule import format_duration, wall_time

READ_LIMIT = 10_000  # finished jobs in a window read whole
GROUP_LIMIT = 100_000  # finished jobs in a window counted with one GROUP BY
WAIT_SAMPLE = 20  # jobs per bucket whose queue wait is averaged
FINISHED = [Status.SUCCEEDED, Status.FAILED]


@dataclass(frozen=True)
class Bucket:
    """The jobs that finished within one bar of a chart."""

    start: datetime
    succeeded: int
    failed: int
    wait: float | None  # mean seconds from due to start; None when no job finished

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


@dataclass(frozen=True)
class Span:
    """A chart's time axis: ``count`` buckets of ``width``, the last one holding now."""

    title: str
    unit: str  # what Trunc() calls the width
    width: timedelta
    count: int
    label_format: str  # a Django date format for the axis labels

    def starts(self, now: datetime) -> list[datetime]:
        local = wall_time(now)
        if self.width >= timedelta(hours=1):
            last = local.replace(minute=0, second=0, microsecond=0)
        else:
            last = local.replace(second=0, microsecond=0)
        return [last - self.width * (self.count - 1 - index) for index in range(self.count)]


LAST_HOUR = Span("last hour, per minute", "minute", timedelta(minutes=1), 60, "H:i")
LAST_DAY = Span("last day, per hour", "hour", timedelta(hours=1), 24, "H:i")


def finished_jobs(span: Span, now: datetime | None = None) -> list[Bucket]:
    """Count the jobs that finished in each bucket of ``span``, and their mean queue wait."""
    now = now or timezone.now()
    starts = span.starts(now)
    jobs = WorkerJob.objects.using(router.db_for_read(WorkerJob))
    window = jobs.filter(status__in=FINISHED, finished__gte=starts[0])
    if count_rows(window, limit=READ_LIMIT).is_exact:
        return read_whole(window, starts, span.width)
    if count_rows(window, limit=GROUP_LIMIT).is_exact:
        counts = grouped_counts(window, span)
    else:
        counts = bucket_counts(window, starts, span.width)
    buckets = []
    for start in starts:
        succeeded, failed = (
            counts.get((start, Status.SUCCEEDED), 0),
            counts.get((start, Status.FAILED), 0),
        )
        bucket = window.filter(finished__gte=start, finished__lt=start + span.width)
        wait = sampled_wait(bucket) if succeeded or failed else None
        buckets.append(Bucket(start, succeeded, failed, wait))
    return buckets


def read_whole(window: WorkerJobQuerySet, starts: list[datetime], width: timedelta) -> list[Bucket]:
    tallies = [[0, 0, 0.0] for _ in starts]  # succeeded, failed, seconds waited
    for finished, status, started, due in window.values_list(
        "finished", "status", "started", "due"
    ):
        assert finished and started  # succeeded and failed jobs have run, and ended
        tally = tallies[min(int((finished - starts[0]) / width), len(starts) - 1)]
        tally[0 if status == Status.SUCCEEDED else 1] += 1
        tally[2] += max((started - due).total_seconds(), 0.0)
    return [
        Bucket(start, int(ok), int(failed), waited / (ok + failed) if ok + failed else None)
        for start, (ok, failed, waited) in zip(starts, tallies, strict=True)
    ]


Counts = dict[tuple[datetime, str], int]  # (bucket start, status) -> jobs


def grouped_counts(window: WorkerJobQuerySet, span: Span) -> Counts:
    rows = (
        window.annotate(bucket=Trunc("finished", span.unit))
        .values("bucket", "status")
        .annotate(jobs=Count("id"))
        .order_by()
    )[: (span.count + 1) * len(FINISHED)]  # two statuses a bucket (and one a clock ahead)
    return {(row["bucket"], row["status"]): row["jobs"] for row in rows}


def bucket_counts(window: WorkerJobQuerySet, starts: list[datetime], width: timedelta) -> Counts:
    counts = {}
    for start in starts:
        bucket = window.filter(finished__gte=start, finished__lt=start + width)
        for status in FINISHED:
            counts[start, status] = count_rows(bucket.filter(status=status)).value
    return counts


def sampled_wait(bucket: WorkerJobQuerySet) -> float | None:
    """The mean queue wait of a few of the jobs in ``bucket``, in seconds."""
    sample = bucket.values_list("started", "due")[:WAIT_SAMPLE]
    waits = [max((started - due).total_seconds(), 0.0) for started, due in sample]
    return sum(waits) / len(waits) if waits else None


def summary_charts(now: datetime | None = None) -> list[SafeString]:
    """The summary's four charts: finished jobs and queue wait, over an hour and a day."""
    now = now or timezone.now()
    charts = []
    for span in (LAST_HOUR, LAST_DAY):
        buckets = finished_jobs(span, now)
        charts += [finished_chart(buckets, span), wait_chart(buckets, span)]
    return charts


# SVG

WIDTH, HEIGHT = 600, 140  # the viewBox; the chart scales to its container's width
LEFT, BOTTOM, TOP = 44, 18, 24  # room for the value axis, the time axis and the title
SUCCEEDED_COLOR = "#3c9a4f"  # legible on Django's light and dark backgrounds alike
FAILED_COLOR = "#d6453d"
WAIT_COLOR = "#4a8fd1"
TEXT_STYLE = "fill: var(--body-quiet-color, #666); font-size: 10px"
TITLE_STYLE = "fill: var(--body-fg, #333); font-size: 12px; font-weight: bold"
GRID_STYLE = "stroke: var(--hairline-color, #ccc); stroke-width: 1"


def finished_chart(buckets: list[Bucket], span: Span) -> SafeString:
    """Stacked bars of the jobs that succeeded and failed in each bucket."""
    top = nice_ceiling(max((bucket.finished for bucket in buckets), default=0))
    bars = []
    for index, bucket in enumerate(buckets):
        x, width = bar_x(index, len(buckets))
        ok_height = scaled(bucket.succeeded, top)
        failed_height = scaled(bucket.failed, top)
        failed_top = HEIGHT - BOTTOM - ok_height - failed_height
        label = _("%(time)s: %(succeeded)s succeeded, %(failed)s failed") % {
            "time": date_format(bucket.start, span.label_format),
            "succeeded": f"{bucket.succeeded:,}",
            "failed": f"{bucket.failed:,}",
        }
        bars.append(
            f'<g data-start="{bucket.start.isoformat()}" data-succeeded="{bucket.succeeded}" '
            f'data-failed="{bucket.failed}"><title>{escape(label)}</title>'
            f"{rect(x, HEIGHT - BOTTOM - ok_height, width, ok_height, SUCCEEDED_COLOR)}"
            f"{rect(x, failed_top, width, failed_height, FAILED_COLOR)}"
            "</g>"
        )
    title = _("Jobs finished, %(span)s") % {"span": _(span.title)}
    legend = [(_("succeeded"), SUCCEEDED_COLOR), (_("failed"), FAILED_COLOR)]
    return svg(title, "".join(bars), f"{top:,}", buckets, span, legend)


def wait_chart(buckets: list[Bucket], span: Span) -> SafeString:
    """Bars of the mean queue wait (due to start) of the jobs finished in each bucket."""
    top = nice_ceiling(max((bucket.wait or 0.0 for bucket in buckets), default=0.0))
    bars = []
    for index, bucket in enumerate(buckets):
        if bucket.wait is None:
            continue
        x, width = bar_x(index, len(buckets))
        height = scaled(bucket.wait, top)
        label = _("%(time)s: waited %(wait)s on average") % {
            "time": date_format(bucket.start, span.label_format),
            "wait": format_duration(timedelta(seconds=bucket.wait)),
        }
        bars.append(
            f'<g data-start="{bucket.start.isoformat()}" data-wait="{bucket.wait:.3f}">'
            f"<title>{escape(label)}</title>"
            f"{rect(x, HEIGHT - BOTTOM - height, width, height, WAIT_COLOR)}</g>"
        )
    title = _("Queue wait, %(span)s") % {"span": _(span.title)}
    return svg(title, "".join(bars), short_duration(top), buckets, span, [])


def svg(
    title: str,
    bars: str,
    top_label: str,
    buckets: list[Bucket],
    span: Span,
    legend: list[tuple[str, str]],
) -> SafeString:
    plot_bottom = HEIGHT - BOTTOM
    keys = []
    for index, (name, color) in enumerate(reversed(legend)):
        x = WIDTH - 80 * (index + 1)
        keys.append(f"{rect(x, 4, 9, 9, color)}{text(x + 13, 12, name)}")
    labels = [
        text(
            bar_x(index, len(buckets))[0], HEIGHT - 4, date_format(bucket.start, span.label_format)
        )
        for index, bucket in enumerate(buckets)
        if index % (len(buckets) // 6) == 0
    ]
    return mark_safe(  # every value in it is a number or escaped
        f'<svg class="qw-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'style="width: 100%; height: auto" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
        f'<text x="{LEFT}" y="13" style="{TITLE_STYLE}">{escape(title)}</text>{"".join(keys)}'
        f"{line(TOP)}{line(plot_bottom)}"
        f"{text(LEFT - 4, TOP + 4, top_label, anchor='end')}"
        f"{text(LEFT - 4, plot_bottom, '0', anchor='end')}"
        f"{bars}{''.join(labels)}</svg>"
    )


def line(y: float) -> str:
    return f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH}" y2="{y}" style="{GRID_STYLE}"/>'


def bar_x(index: int, count: int) -> tuple[float, float]:
    step = (WIDTH - LEFT) / count
    return LEFT + index * step + step * 0.1, step * 0.8


def scaled(value: float, top: float) -> float:
    return 0.0 if not top else value / top * (HEIGHT - BOTTOM - TOP)


def rect(x: float, y: float, width: float, height: float, color: str) -> str:
    if height <= 0:
        return ""
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" fill="{color}"/>'
    )


def text(x: float, y: float, content: str, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" style="{TEXT_STYLE}">'
        f"{escape(content)}</text>"
    )


def short_duration(seconds: float) -> str:
    """An axis label for a number of seconds: "500 ms", "20 s", "5 min", "2 h"."""
    if seconds < 1:
        return f"{seconds * 1000:g} ms" if seconds else "0"
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``; 0 for 0."""
    if value <= 0:
        return 0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)
