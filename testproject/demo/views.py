"""Views that submit demo jobs and show the signed-in user's jobs."""

import json

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.views.decorators.http import require_POST

from django_quickworker import submit_job
from django_quickworker.exceptions import InvalidJobError
from django_quickworker.models import WorkerJob

# Only these may be started from the page; the registry also holds jobs users must not run.
DEMO_TYPES = ("demo.add", "demo.fail", "demo.countdown", "demo.asyncSleep")


@login_required
def index(request: HttpRequest) -> HttpResponse:
    jobs = WorkerJob.objects.filter(user=request.user).order_by("-id")[:20]
    # Results go to the page as JSON, which its script formats as it does live results.
    rows = [(job, "" if job.result is None else json.dumps(job.result)) for job in jobs]
    context = {"jobs": jobs, "rows": rows, "csrf_token_value": get_token(request)}
    return render(request, "demo/index.html", context)


@login_required
@require_POST
def start_job(request: HttpRequest, type_name: str) -> JsonResponse:
    """Submit a demo job for the signed-in user; the body is the job's JSON data.

    Its progress and result reach the user's browser through the websocket.
    """
    if type_name not in DEMO_TYPES:
        return JsonResponse({"error": f"{type_name!r} is not a demo job."}, status=404)
    try:
        data = json.loads(request.body or b"{}")
        job = submit_job(
            tag=f"demo:{request.user.pk}:{type_name}",
            type=type_name,
            user=request.user,
            data=data,
            on_duplicate_tag="allow",
        )
    except (ValueError, InvalidJobError) as error:  # bad JSON body or a refused submission
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse({"id": job.pk, "type": job.type, "status": job.status}, status=201)
