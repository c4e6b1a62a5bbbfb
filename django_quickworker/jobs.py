"""Built-in jobs."""

from typing import Any

from django.db import connections, router, transaction
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
    alias = router.db_for_write(WorkerJob)
    table = connections[alias].ops.quote_name(WorkerJob._meta.db_table)
    deleted = 0
    while True:
        with transaction.atomic(using=alias):
            batch = list(removable.order_by("remove_at").values_list("pk", flat=True)[:batch_size])
            if not batch:
                return deleted
            # Retries of these rows outlive them (rescheduled_from is SET_NULL). Done here in
            # one UPDATE, rather than by Model.delete(), which would load every row.
            WorkerJob.objects.filter(rescheduled_from__in=batch).update(rescheduled_from=None)
            with connections[alias].cursor() as cursor:
                placeholders = ", ".join(["%s"] * len(batch))
                cursor.execute(f"DELETE FROM {table} WHERE id IN ({placeholders})", batch)
                deleted += cursor.rowcount
