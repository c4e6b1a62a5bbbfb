"""A first WorkerJob admin: browse and search the queue."""

from django.contrib import admin

from django_quickworker.models import WorkerJob


@admin.register(WorkerJob)
class WorkerJobAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "tag", "user", "status", "due", "started", "finished", "queue"]
    list_filter = ["status", "queue", "type"]
    search_fields = ["tag", "type", "=id"]
    date_hierarchy = "due"
    raw_id_fields = ["user", "rescheduled_from"]
    list_select_related = ["user"]
    show_full_result_count = False  # no COUNT(*) over the whole queue on every page
