"""The queue's summary, shown above the job list (``quickworker status`` in a panel)."""

from typing import Any

from django_quickworker.charts import summary_charts
from django_quickworker.models import Status
from django_quickworker.overview import summarize
from django_quickworker.schedule import format_duration


def summary_context() -> dict[str, Any]:
    """The queue's summary, ready for ``summary.html``."""
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
        "charts": summary_charts(summary.checked_at),
    }
