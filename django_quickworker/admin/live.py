"""Live rows: the JSON that admin-live.js polls, every few seconds while jobs on the page
have not finished, to redraw their cells without a reload (no channel layer needed)."""

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.utils.html import conditional_escape

from django_quickworker.models import WorkerJob

LIVE_CELLS = ["status_display", "started_at", "duration"]  # the list's cells that change
LIVE_FIELDS = ["progress_json"]  # and the job page's, beside the status
LIVE_LIMIT = 100  # jobs one request may ask for: a page of the list


def live_rows(model_admin: admin.ModelAdmin, request: HttpRequest) -> JsonResponse:
    """The status and redrawn cells of the jobs ``?id=``: {"jobs": [{id, status, cells}]}."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    ids = request.GET.getlist("id")
    bad = [value for value in ids if not (value.isascii() and value.isdigit())]
    if bad or len(ids) > LIVE_LIMIT:
        reason = (
            f"id={bad[0]!r} is not a job id"
            if bad
            else f"{len(ids)} ids are more than {LIVE_LIMIT}"
        )
        return JsonResponse(
            {"error": f"{reason}; give up to {LIVE_LIMIT} ids=<digits>."}, status=400
        )
    jobs = WorkerJob.objects.filter(pk__in=[int(value) for value in ids]).select_related("user")
    return JsonResponse({"jobs": [_live(model_admin, job) for job in jobs.order_by("pk")]})


def _live(model_admin: admin.ModelAdmin, job: WorkerJob) -> dict[str, Any]:
    cells = {
        name: str(conditional_escape(getattr(model_admin, name)(job)))
        for name in LIVE_CELLS + LIVE_FIELDS
    }
    return {"id": job.pk, "status": job.status, "cells": cells}
