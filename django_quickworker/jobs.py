"""Built-in jobs."""

from typing import Any

from django.utils import timezone

from django_quickworker.conf import conf
from django_quickworker.models import WorkerJob
from django_quickworker.registry import job


@job("removeOldWorkerJobs", cron="@hourly")
def remove_old_worker_jobs(ctx: Any) -> dict[str, int]:
    """Delete finished, non-persistent rows whose ``remove_at`` has passed."""
    return {"deleted": delete_removable_jobs(conf.cleanup_batch_size)}


def delete_removable_jobs(batch_size: int) -> int:
    """Delete removable rows in batches of ``batch_size``, each its own short transaction,
    so that a table with millions of old rows is never locked for long."""
    removable = WorkerJob.objects.finished().filter(persistent=False, remove_at__lte=timezone.now())
    deleted = 0
    while True:
        batch = list(removable.order_by("remove_at").values_list("pk", flat=True)[:batch_size])
        if not batch:
            return deleted
        # Filtered again, so a row changed since the select is left alone.
        _, by_model = removable.filter(pk__in=batch).delete()
        deleted += by_model.get(WorkerJob._meta.label, 0)
