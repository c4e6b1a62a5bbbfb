"""The WorkerJob admin: list, filters, search, detail, actions, the add form, permissions and
escaping, through Django's test client."""

import functools
import html
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from django.utils import formats, timezone

from django_quickworker import submit_job
from django_quickworker.conf import conf
from django_quickworker.models import Status, WorkerJob
from django_quickworker.schedule import next_cron_due, next_runs
from tests.conftest import run_together
from tests.test_overview import live_process, make_row

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/quickworker/workerjob/"
ADD = CHANGELIST + "add/"
XSS = "<script>alert(1)</script>"
BACK = "\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK} "  # the date hierarchy's "back" link


def page_of(job: WorkerJob) -> str:
    return reverse("admin:quickworker_workerjob_change", args=[job.pk])


def login(client: Client, *codenames: str, is_staff: bool = True) -> User:
    """Log ``client`` in as a staff user holding exactly these workerjob permissions."""
    user = User.objects.create_user("operator", password="pw", is_staff=is_staff)
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="quickworker", codename=codename)
        )
    client.force_login(user)
    return user


def listed(response: Any) -> list[int]:
    return [job.pk for job in response.context["cl"].result_list]


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def act(client: Client, action: str, *jobs: WorkerJob, **extra: Any) -> Any:
    """Run a changelist action on ``jobs`` and follow the redirect."""
    data = {"action": action, "_selected_action": [job.pk for job in jobs], "index": 0}
    return client.post(CHANGELIST, {**data, "select_across": 0, **extra}, follow=True)


def stored(job: WorkerJob) -> WorkerJob:
    return WorkerJob.objects.get(pk=job.pk)


# --- the list -----------------------------------------------------------------------------


def test_the_list_shows_each_column(admin_client: Client) -> None:
    user = User.objects.create_user("alice")
    running = make_row(
        Status.RUNNING,
        tag="welcome:1",
        user=user,
        queue="mail",
        progress={"current": 2, "total": 5, "message": "rendering"},
    )
    failed = make_row(Status.FAILED, tag="welcome:2", attempt=2)
    retrying = make_row(
        Status.SCHEDULED,
        tag="welcome:3",
        attempt=1,
        max_attempts=3,
        auto_reschedule_on_failure=True,
    )

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert listed(response) == [retrying.pk, failed.pk, running.pk]  # newest first
    page = response.content.decode()
    headers = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', page)
    assert headers == ["id", "job", "status_display", "due_at", "started_at", "duration"]
    assert '<span class="qw-type">demo.add</span>' in page
    assert '<span class="qw-tag" title="welcome:1">welcome:1 · alice</span>' in page
    assert f'data-qw-job="{running.pk}" data-qw-status="running"' in page
    assert '<span class="qw-badge qw-status-running">Running</span>' in page
    assert '<span class="qw-badge qw-status-failed">Failed</span>' in page
    assert '<progress class="qw-progress" max="5" value="2"></progress> 2/5 rendering' in page
    assert '<span class="qw-muted">run 2</span>' in page
    assert '<span class="qw-muted">run 1/3</span>' in page  # out of what its policy allows
    assert '<td class="field-duration">2 s</td>' in page  # finished 2 s after it started
    assert '<td class="field-started_at">—</td>' in page  # the one marker for "none"
    started = timezone.localtime(running.started).strftime("%H:%M:%S")
    assert f">{started}</time>" in page  # to the second
    assert "django_quickworker/admin.css" in page
    assert "django_quickworker/admin-live.js" in page
    assert 'id="qw-live" data-url="/admin/quickworker/workerjob/live/"' in page


def test_the_summary_above_the_list(admin_client: Client) -> None:
    make_row(Status.SCHEDULED, at=timezone.now() - timedelta(minutes=2))
    make_row(Status.FAILED)
    make_row(Status.FAILED)
    live_process("web1:42", workers=3)

    page = admin_client.get(CHANGELIST).content.decode()

    summary = page[page.index('<section class="qw-summary') : page.index("</section>")]
    assert 'href="?status__exact=failed"><span class="qw-badge qw-status-failed">Failed</span>' in (
        summary
    )
    assert '<span class="qw-count">2</span>' in summary
    assert "the oldest due job has waited 2 min (1 due)" in summary
    assert '<a href="?failed=hour">2</a>' in summary
    assert "<code>web1:42</code> (3 workers, all queues) last heartbeat" in summary
    assert "qw-unhealthy" not in page


def test_the_summary_flags_a_queue_nobody_serves(admin_client: Client) -> None:
    page = admin_client.get(CHANGELIST).content.decode()
    assert "qw-summary qw-unhealthy" in page
    assert '<strong class="qw-alert">none</strong>' in page
    assert "No runworkers process is alive" in page


def test_the_list_never_counts_or_scans_the_whole_table(admin_client: Client) -> None:
    for index in range(3):
        make_row(Status.SUCCEEDED, tag=f"t:{index}")
    urls = [
        CHANGELIST,
        CHANGELIST + "?status__exact=failed&type=demo.add&queue=default&kind=cron&failed=day",
        CHANGELIST + f"?due__year={timezone.now().year}",
        CHANGELIST + "?q=t:",
    ]
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url).status_code == 200
        statements = [query["sql"] for query in queries.captured_queries]
        assert not [sql for sql in statements if "DISTINCT" in sql.upper()], url
        counts = [sql for sql in statements if "COUNT(" in sql.upper()]
        assert counts and all("LIMIT" in sql.upper() for sql in counts), counts


def test_past_the_count_limit_the_list_says_so(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("django_quickworker.overview.COUNT_LIMIT", 3)
    monkeypatch.setattr("django_quickworker.overview.count_rows.__defaults__", (3,))
    for index in range(5):
        make_row(Status.SUCCEEDED, tag=f"t:{index}")
    page = admin_client.get(CHANGELIST).content.decode()
    paginator = page[page.index('<p class="paginator">') :]
    if connection.vendor in ("postgresql", "mysql"):
        assert re.search(r"≈ \d+ worker jobs", paginator)
    else:
        assert "more than 3 worker jobs" in paginator


# --- filters and search --------------------------------------------------------------------


@pytest.fixture
def assorted() -> dict[str, WorkerJob]:
    now = timezone.now()
    return {
        "scheduled": make_row(Status.SCHEDULED, tag="mail:1", queue="mail"),
        "cron": make_row(Status.SCHEDULED, tag="cron:tick", cron_schedule="*/5 * * * *"),
        "running": make_row(Status.RUNNING, type="demo.countdown", tag="count:1"),
        "succeeded": make_row(Status.SUCCEEDED, tag="welcome:7"),
        "failed_now": make_row(Status.FAILED, type="demo.fail", tag="fail:1"),
        "failed_today": make_row(Status.FAILED, at=now - timedelta(hours=5), tag="fail:2"),
        "failed_long_ago": make_row(Status.FAILED, at=now - timedelta(days=3), tag="fail:3"),
        "cancelled": make_row(Status.CANCELLED, tag="welcome:8"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=failed", ["failed_now", "failed_today", "failed_long_ago"]),
        ("status__exact=running", ["running"]),
        ("type=demo.fail", ["failed_now"]),
        ("type=demo.countdown", ["running"]),
        ("queue=mail", ["scheduled"]),
        ("kind=cron", ["cron"]),
        ("failed=hour", ["failed_now"]),
        ("failed=day", ["failed_now", "failed_today"]),
        ("kind=one-off&status__exact=cancelled", ["cancelled"]),
    ],
)
def test_filters(
    admin_client: Client, assorted: dict[str, WorkerJob], query: str, expected: list[str]
) -> None:
    response = admin_client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    assert sorted(listed(response)) == sorted(assorted[name].pk for name in expected)


def test_filter_choices_come_from_the_registry_and_fixed_lists(
    admin_client: Client, assorted: dict[str, WorkerJob]
) -> None:
    live_process(queues="mail,reports")
    page = admin_client.get(CHANGELIST).content.decode()
    sidebar = page[page.index('id="changelist-filter"') :]  # <nav> before Django 6, <search>
    for title in ["status", "type", "queue", "kind", "failed recently"]:
        assert f"By {title}" in sidebar
    for choice in ["?type=demo.add", "?type=demo.record", "?queue=reports", "?queue=default"]:
        assert f'href="{choice}"' in sidebar, choice
    assert 'href="?kind=cron"' in sidebar and 'href="?failed=hour"' in sidebar
    assert "Show counts" not in sidebar  # facets would count every choice


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("welcome:", ["succeeded", "cancelled"]),  # the start of a tag
        ("welcome:7", ["succeeded"]),
        ("come", []),  # not the middle of one
        ("demo.fail", ["failed_now"]),  # a type's exact name
        ("demo.fai", []),
    ],
)
def test_search(
    admin_client: Client, assorted: dict[str, WorkerJob], term: str, expected: list[str]
) -> None:
    response = admin_client.get(CHANGELIST, {"q": term})
    assert sorted(listed(response)) == sorted(assorted[name].pk for name in expected)


def test_search_by_id(admin_client: Client, assorted: dict[str, WorkerJob]) -> None:
    job = assorted["running"]
    response = admin_client.get(CHANGELIST, {"q": f" {job.pk} "})
    assert listed(response) == [job.pk]
    assert '<span class="small quiet">1 result (<a href="?">Show all</a>)</span>' in (
        response.content.decode()
    )
    assert "Show all</a>)</span>" not in admin_client.get(CHANGELIST).content.decode()
    assert listed(admin_client.get(CHANGELIST, {"q": "99999999999999999999999"})) == []


def test_only_indexed_columns_sort(admin_client: Client, assorted: dict[str, WorkerJob]) -> None:
    page = admin_client.get(CHANGELIST).content.decode()
    assert re.search(r'<th scope="col" class="sortable[^"]*column-due_at', page)
    assert not re.search(r'<th scope="col" class="sortable[^"]*column-tag', page)
    # Asking for another column in the URL leaves the default order (-id).
    response = admin_client.get(CHANGELIST, {"o": "2"})
    assert listed(response) == sorted(listed(response), reverse=True)


def test_date_hierarchy(admin_client: Client) -> None:
    def at(year: int, month: int, day: int) -> datetime:
        return datetime(year, month, day, 10, tzinfo=timezone.get_current_timezone())

    march5 = make_row(Status.SUCCEEDED, at=at(2024, 3, 5))
    march7 = make_row(Status.SUCCEEDED, at=at(2024, 3, 7))
    make_row(Status.SUCCEEDED, at=at(2024, 11, 30))
    january = make_row(Status.SCHEDULED, at=at(2031, 1, 2))

    def choices(query: str) -> list[str]:
        response = admin_client.get(CHANGELIST + query)
        nav = response.content.decode().split('<nav class="toplinks"')[1].split("</nav>")[0]
        links = re.findall(r'<a href="[^"]*"(?: class="date-back")?>([^<]+)</a>', nav)
        return [html.unescape(link) for link in links]

    assert choices("") == ["2024", "2031"]  # only years holding jobs
    assert choices("?due__year=2024") == [f"{BACK}All dates", "March 2024", "November 2024"]
    assert choices("?due__year=2031") == [f"{BACK}All dates", "January 2031"]
    assert choices("?due__year=2024&due__month=3") == [f"{BACK}2024", "March 5", "March 7"]
    response = admin_client.get(CHANGELIST + "?due__year=2024&due__month=3&due__day=7")
    assert listed(response) == [march7.pk]
    response = admin_client.get(CHANGELIST + "?due__year=2024&due__month=3")
    assert listed(response) == [march7.pk, march5.pk]  # by due time, newest first
    assert listed(admin_client.get(CHANGELIST + "?due__year=2031")) == [january.pk]


def test_the_date_hierarchy_steps_down_while_one_choice_is_left(admin_client: Client) -> None:
    make_row(
        Status.SUCCEEDED, at=datetime(2024, 12, 30, 23, tzinfo=timezone.get_current_timezone())
    )
    make_row(Status.SUCCEEDED, at=datetime(2024, 12, 31, 1, tzinfo=timezone.get_current_timezone()))
    page = admin_client.get(CHANGELIST).content.decode()
    nav = page.split('<nav class="toplinks"')[1].split("</nav>")[0]
    assert ">December 30</a>" in nav and ">December 31</a>" in nav


# --- a job's page --------------------------------------------------------------------------


def test_a_job_page_shows_data_result_traceback_and_progress(admin_client: Client) -> None:
    job = make_row(
        Status.FAILED,
        data={"email": "a@example.com", "items": [1, 2]},
        result={"error": "SMTP refused"},
        error_traceback='Traceback (most recent call last):\n  File "jobs.py", line 3\nOSError',
        progress={"current": 1, "total": 3, "message": "connecting"},
    )
    page = admin_client.get(page_of(job)).content.decode()
    data = json.dumps(job.data, indent=2, sort_keys=True)
    assert f'<pre class="qw-pre">{html.escape(data)}</pre>' in page
    assert html.escape('"error": "SMTP refused"') in page
    assert html.escape('"message": "connecting"') in page
    assert '<pre class="qw-pre qw-traceback">Traceback (most recent call last):' in page
    assert "View worker job" in page  # read-only
    assert 'name="_save"' not in page


def test_a_job_page_shows_the_retry_chain_both_ways(admin_client: Client) -> None:
    first = make_row(Status.FAILED)
    second = make_row(Status.FAILED, rescheduled_from=first)
    third = make_row(Status.SCHEDULED, rescheduled_from=second)
    page = admin_client.get(page_of(second)).content.decode()
    start = page.index('<ol class="qw-chain">')
    chain = page[start : page.index("</ol>", start)]
    assert chain.index(f"#{first.pk}") < chain.index(f"#{second.pk}") < chain.index(f"#{third.pk}")
    assert f'<a href="{page_of(first)}">#{first.pk}' in chain
    assert f'<a href="{page_of(third)}">#{third.pk}' in chain
    assert f"<strong>#{second.pk}" in chain  # this one, not a link
    lone = admin_client.get(page_of(make_row(Status.SUCCEEDED))).content.decode()
    assert "no retries" in lone


def test_a_job_page_shows_its_worker(admin_client: Client) -> None:
    live_process("host:1:0badcafe")
    live_process("host:2:feedf00d")  # the same host's other runworkers is not this job's
    job = make_row(Status.RUNNING, worker="host:7:0badcafe:3")
    page = admin_client.get(page_of(job)).content.decode()
    assert "<code>host:7:0badcafe:3</code>" in page
    assert "runworkers host:1:0badcafe alive, last heartbeat" in page
    assert "host:2:feedf00d" not in page
    gone = make_row(Status.FAILED, worker="elsewhere:9:12345678:0")
    page = admin_client.get(page_of(gone)).content.decode()
    assert "its runworkers on elsewhere has gone" in page


def test_a_cron_job_page_shows_the_next_three_runs(admin_client: Client) -> None:
    job = make_row(Status.SCHEDULED, cron_schedule="0 3 * * *")
    page = admin_client.get(page_of(job)).content.decode()
    runs = next_runs("0 3 * * *", timezone.now(), conf.cron_time_zone, 3)
    assert len(runs) == 3 and runs[0] > timezone.now()
    assert runs[1] == next_cron_due("0 3 * * *", runs[0], conf.cron_time_zone)
    for run in runs:
        shown = formats.date_format(timezone.localtime(run), "M j, Y, H:i:s")
        assert f">{shown}</time></li>" in page
    assert "Schedule read in the UTC time zone." in page


def test_a_job_page_shows_times_to_the_second_and_one_marker_for_none(
    admin_client: Client,
) -> None:
    job = make_row(Status.SCHEDULED, at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt_timezone.utc))
    page = admin_client.get(page_of(job)).content.decode()
    assert '<div class="readonly"><time datetime="2031-05-06T07:08:09+00:00"' in page
    assert ">May 6, 2031, 07:08:09</time>" in page
    for field in ["started_time", "finished_time", "worker_display", "timeout_display"]:
        assert re.search(rf'field-{field}">.*?<div class="readonly">—</div>', page, re.S), field
    for field in ["result_json", "traceback", "progress_json", "cron_display", "user"]:
        assert re.search(rf'field-{field}">.*?<div class="readonly">—</div>', page, re.S), field
    assert ">None<" not in page and ">-<" not in page


@pytest.mark.parametrize(
    ("fields", "wording"),
    [
        ({"persistent": True}, "Persistent: kept forever, cleanup never removes it."),
        (
            {"remove_delay": timedelta(days=2)},
            "Kept 2 d after it finishes, then removed by cleanup.",
        ),
        ({}, "Kept 1 h after it succeeds, 7 d after it fails or is cancelled."),
        ({"auto_reschedule_on_failure": False}, "No automatic retry: a failed run stays failed."),
        (
            {
                "auto_reschedule_on_failure": True,
                "max_attempts": 4,
                "auto_reschedule_on_failure_delay": timedelta(seconds=30),
                "retry_backoff": "exponential",
            },
            "Up to 4 runs; the first retry after 30 s, doubling each time.",
        ),
    ],
)
def test_a_job_page_says_what_its_settings_mean(
    admin_client: Client, fields: dict[str, Any], wording: str
) -> None:
    page = admin_client.get(page_of(make_row(Status.SCHEDULED, **fields))).content.decode()
    assert f'<div class="readonly">{html.escape(wording)}</div>' in page
    assert "Never removed by cleanup" not in page  # the help text read as a contradiction


def test_a_replaced_job_links_the_job_that_replaced_it(admin_client: Client) -> None:
    first = submit_job(tag="report:7", type="demo.add", data={"a": 1, "b": 1})
    second = submit_job(tag="report:7", type="demo.add", data={"a": 2, "b": 2})
    page = admin_client.get(page_of(first)).content.decode()
    assert stored(first).status == Status.CANCELLED
    assert re.search(
        rf'field-replaced_by">.*?<div class="readonly"><a href="{page_of(second)}">#{second.pk} ',
        page,
        re.S,
    )
    # An operator's cancel names no successor, even when the tag is used again later.
    by_hand = make_row(Status.SCHEDULED, tag="mail:3")
    act(admin_client, "cancel", by_hand)
    submit_job(tag="mail:3", type="demo.add", data={"a": 0, "b": 0})
    page = admin_client.get(page_of(by_hand)).content.decode()
    assert re.search(r'field-replaced_by">.*?<div class="readonly">—</div>', page, re.S)
    assert "field-replaced_by" not in admin_client.get(page_of(second)).content.decode()


def test_a_job_page_cannot_be_saved_or_deleted(admin_client: Client) -> None:
    job = make_row(Status.SCHEDULED)
    assert admin_client.post(page_of(job), {"tag": "changed"}).status_code == 403
    delete = reverse("admin:quickworker_workerjob_delete", args=[job.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert stored(job).tag == job.tag


# --- actions -------------------------------------------------------------------------------


def test_run_now(admin_client: Client) -> None:
    later = make_row(Status.SCHEDULED, at=timezone.now() + timedelta(hours=2))
    due = make_row(Status.SCHEDULED)
    running = make_row(Status.RUNNING)
    before = timezone.now()
    response = act(admin_client, "run_now", later, due, running)
    assert messages_of(response) == [
        "Set 1 job to run now; skipped 1 that was already due and 1 that had already started."
    ]
    assert before <= stored(later).due <= timezone.now()
    assert stored(running).status == Status.RUNNING


def test_retry(admin_client: Client) -> None:
    failed = make_row(Status.FAILED, data={"a": 4, "b": 5}, tag="sum:9", attempt=1)
    cancelled = make_row(Status.CANCELLED)
    succeeded = make_row(Status.SUCCEEDED)
    before = timezone.now()
    response = act(admin_client, "retry", failed, cancelled, succeeded)
    retries = list(WorkerJob.objects.filter(rescheduled_from__isnull=False).order_by("pk"))
    assert [retry.rescheduled_from_id for retry in retries] == [failed.pk, cancelled.pk]
    retry = retries[0]
    assert retry.status == Status.SCHEDULED and retry.tag == "sum:9"
    assert retry.data == {"a": 4, "b": 5} and before <= retry.due <= timezone.now()
    assert messages_of(response) == [
        f"Retried 2 jobs as #{retries[0].pk}, #{retries[1].pk}; "
        "skipped 1 that had not failed or been cancelled."
    ]
    assert stored(failed).status == Status.FAILED  # the failed run stays as it was


def test_retry_resubmits_at_most_retry_limit_jobs_at_once(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("django_quickworker.admin.actions.RETRY_LIMIT", 2)
    jobs = [make_row(Status.FAILED, tag=f"f:{index}") for index in range(3)]
    response = act(admin_client, "retry", *jobs)
    [message] = messages_of(response)
    assert message.endswith("; skipped 1 that is past the 2 retried at once.")
    retried = WorkerJob.objects.filter(rescheduled_from__isnull=False)
    assert sorted(retried.values_list("rescheduled_from", flat=True)) == [jobs[0].pk, jobs[1].pk]


@pytest.mark.postgresql  # NOTIFY: MySQL's workers learn of jobs from their parent's poll
@pytest.mark.django_db(transaction=True)
def test_run_now_wakes_listening_workers(
    admin_client: Client, listener: psycopg.Connection[Any]
) -> None:
    job = make_row(Status.SCHEDULED, at=timezone.now() + timedelta(hours=1), queue="mail")
    act(admin_client, "run_now", job)
    notes = list(listener.notifies(timeout=10, stop_after=1))
    assert [note.payload for note in notes] == ["mail"]


def test_retry_skips_jobs_already_retried_or_no_longer_registered(admin_client: Client) -> None:
    failed = make_row(Status.FAILED)
    make_row(Status.SCHEDULED, rescheduled_from=failed)  # an automatic retry, waiting
    orphan = make_row(Status.FAILED, type="removed.fromCode")
    response = act(admin_client, "retry", failed, orphan)
    assert messages_of(response) == [
        "Retried 0 jobs; skipped 1 that already had a retry waiting or running "
        "and 1 that has a type no longer registered."
    ]
    assert WorkerJob.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_operators_retrying_a_job_at_once_make_one_retry() -> None:
    operator = User.objects.create_superuser("ops", "ops@example.com", "pw")
    failed = make_row(Status.FAILED)
    clients = [Client(), Client()]
    for client in clients:
        client.force_login(operator)
    data = {"action": "retry", "_selected_action": [failed.pk], "index": 0, "select_across": 0}

    run_together([functools.partial(client.post, CHANGELIST, data) for client in clients])

    retry = WorkerJob.objects.get(rescheduled_from=failed)
    # Read afterwards, one at a time: the test client's context capture is not per thread.
    told = sorted(messages_of(client.get(CHANGELIST))[0] for client in clients)
    assert told == [
        "Retried 0 jobs; skipped 1 that already had a retry waiting or running.",
        f"Retried 1 job as #{retry.pk}.",
    ]


def test_cancel(admin_client: Client) -> None:
    scheduled = make_row(Status.SCHEDULED, tag="s")
    running = make_row(Status.RUNNING, tag="r")
    asked_before = make_row(Status.RUNNING, tag="r2", cancel_requested=timezone.now())
    succeeded = make_row(Status.SUCCEEDED, tag="done")
    response = act(admin_client, "cancel", scheduled, running, asked_before, succeeded)
    assert messages_of(response) == [
        "Cancelled 1 job; asked 1 running job to stop (its runworkers ends it within seconds); "
        "skipped 1 that was already asked to stop and 1 that had already finished."
    ]
    cancelled = stored(scheduled)
    assert cancelled.status == Status.CANCELLED
    assert cancelled.result == {"error": "Cancelled by an operator."}
    stopping = stored(running)
    assert stopping.status == Status.RUNNING and stopping.cancel_requested is not None
    assert stored(succeeded).status == Status.SUCCEEDED
    page = admin_client.get(CHANGELIST).content.decode()
    assert 'qw-status-running">Running</span> <span class="qw-muted">stopping</span>' in page


def test_an_action_that_changes_nothing_warns(admin_client: Client) -> None:
    response = act(admin_client, "cancel", make_row(Status.SUCCEEDED))
    [message] = response.context["messages"]
    assert message.level_tag == "warning"
    assert str(message) == "Cancelled 0 jobs; skipped 1 that had already finished."


def test_actions_across_all_pages(admin_client: Client) -> None:
    jobs = [make_row(Status.SCHEDULED, tag=f"x:{index}") for index in range(3)]
    make_row(Status.SCHEDULED, tag="other")
    response = admin_client.post(
        CHANGELIST + "?q=x:",
        {"action": "cancel", "_selected_action": [jobs[0].pk], "index": 0, "select_across": 1},
        follow=True,
    )
    assert messages_of(response) == ["Cancelled 3 jobs."]
    assert WorkerJob.objects.scheduled().get().tag == "other"


def test_a_job_page_offers_the_actions_that_apply(admin_client: Client) -> None:
    failed = make_row(Status.FAILED)
    page = admin_client.get(page_of(failed)).content.decode()
    assert (
        '<button type="submit" name="index" value="0" class="qw-action-retry">Retry</button>'
        in (page)
    )
    assert "qw-action-cancel" not in page and "qw-action-run_now" not in page
    scheduled = admin_client.get(page_of(make_row(Status.SCHEDULED))).content.decode()
    assert "qw-action-run_now" in scheduled and "qw-action-cancel" in scheduled
    assert "qw-action-retry" not in scheduled

    response = act(admin_client, "retry", failed, _job_page=str(failed.pk))
    assert response.redirect_chain == [(page_of(failed), 302)]
    assert messages_of(response)[0].startswith("Retried 1 job as #")


# --- live rows ------------------------------------------------------------------------------

LIVE = CHANGELIST + "live/"


def test_live_rows_give_the_cells_that_change(admin_client: Client) -> None:
    running = make_row(Status.RUNNING, progress={"current": 3, "total": 4, "message": XSS})
    done = make_row(Status.SUCCEEDED)
    response = admin_client.get(LIVE, {"id": [running.pk, done.pk, 999_999]})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    jobs = response.json()["jobs"]
    assert [(job["id"], job["status"]) for job in jobs] == [
        (running.pk, "running"),
        (done.pk, "succeeded"),
    ]
    cells = jobs[0]["cells"]
    assert sorted(cells) == ["duration", "progress_json", "started_at", "status_display"]
    list_page = admin_client.get(CHANGELIST).content.decode()
    for name in ["status_display", "started_at"]:  # as the list draws them
        assert f'<td class="field-{name}">{cells[name]}</td>' in list_page, name
    assert re.fullmatch(r"\d+(\.\d)? m?s", cells["duration"])  # a running job's, so far
    assert '<progress class="qw-progress" max="4" value="3"></progress>' in cells["status_display"]
    assert "&lt;script&gt;" in cells["status_display"] and "<script>" not in cells["progress_json"]
    assert jobs[1]["cells"]["progress_json"] == "—"


@pytest.mark.parametrize(
    ("ids", "error"),
    [
        (["12", "x1"], "id='x1' is not a job id; give up to 100 ids=<digits>."),
        ([str(n) for n in range(101)], "101 ids are more than 100; give up to 100 ids=<digits>."),
    ],
)
def test_live_rows_refuse_bad_ids(admin_client: Client, ids: list[str], error: str) -> None:
    response = admin_client.get(LIVE, {"id": ids})
    assert response.status_code == 400 and response.json() == {"error": error}


def test_live_rows_are_for_staff_who_may_view_jobs(client: Client) -> None:
    job = make_row(Status.RUNNING)
    response = client.get(LIVE, {"id": job.pk})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    login(client, "view_workerjob", is_staff=False)
    assert client.get(LIVE, {"id": job.pk}).status_code == 302
    client.logout()
    User.objects.all().delete()
    login(client)
    assert client.get(LIVE, {"id": job.pk}).status_code == 403
    client.logout()
    User.objects.all().delete()
    login(client, "view_workerjob")
    assert client.get(LIVE, {"id": job.pk}).json()["jobs"][0]["id"] == job.pk


# --- permissions ---------------------------------------------------------------------------


def test_anonymous_and_non_staff_users_are_sent_to_log_in(client: Client) -> None:
    response = client.get(CHANGELIST)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    login(client, "view_workerjob", "change_workerjob", is_staff=False)
    response = client.get(CHANGELIST)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_the_model_permissions_see_nothing(client: Client) -> None:
    job = make_row(Status.FAILED)
    login(client)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(page_of(job)).status_code == 403
    assert client.get(ADD).status_code == 403


def test_view_permission_shows_the_queue_but_allows_no_action(client: Client) -> None:
    job = make_row(Status.FAILED)
    login(client, "view_workerjob")
    response = client.get(CHANGELIST)
    assert response.status_code == 200 and listed(response) == [job.pk]
    assert response.context["action_form"] is None
    assert "qw-action-retry" not in client.get(page_of(job)).content.decode()
    response = act(client, "retry", job)
    assert WorkerJob.objects.count() == 1
    assert client.get(ADD).status_code == 403


def test_actions_need_the_change_permission(client: Client) -> None:
    job = make_row(Status.FAILED)
    login(client, "view_workerjob", "change_workerjob")
    response = act(client, "retry", job)
    assert messages_of(response)[0].startswith("Retried 1 job")
    assert client.get(ADD).status_code == 403


def test_adding_needs_the_add_permission(client: Client) -> None:
    login(client, "view_workerjob", "add_workerjob")
    assert client.get(ADD).status_code == 200
    response = client.post(ADD, form_data())
    assert response.status_code == 302
    assert WorkerJob.objects.get().tag == "form:1"
    assert client.get(CHANGELIST).context["action_form"] is None  # still no actions


def test_worker_processes_are_read_only(admin_client: Client) -> None:
    process = live_process("web1:7", queues="mail")
    page = admin_client.get("/admin/quickworker/workerprocess/").content.decode()
    assert "web1:7" in page and "mail" in page
    assert admin_client.get("/admin/quickworker/workerprocess/add/").status_code == 403
    change = f"/admin/quickworker/workerprocess/{process.pk}/change/"
    assert admin_client.post(change, {"name": "x"}).status_code == 403


# --- adding a job --------------------------------------------------------------------------


def form_data(**fields: Any) -> dict[str, Any]:
    data = {
        "type": "demo.add",
        "tag": "form:1",
        "user": "",
        "data": '{"a": 1, "b": 2}',
        "due_0": "",
        "due_1": "",
        "delay": "",
        "cron": "",
        "queue": "",
        "priority": "",
        "max_attempts": "",
        "on_duplicate_tag": "replace",
        "_save": "Save",
    }
    return {**data, **fields}


def form_errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form was accepted"
    errors = response.context["adminform"].form.errors
    return {field: list(messages) for field, messages in errors.items()}


def test_the_add_form_offers_the_registered_types(admin_client: Client) -> None:
    page = admin_client.get(ADD).content.decode()
    for name in ["demo.add", "demo.fail", "demo.countdown", "removeOldWorkerJobs"]:
        assert f'<option value="{name}">{name}</option>' in page, name


def test_adding_a_job_submits_it(admin_client: Client) -> None:
    user = User.objects.create_user("bob")
    earlier = submit_job(tag="form:1", type="demo.add", data={"a": 0, "b": 0})
    before = timezone.now()
    response = admin_client.post(ADD, form_data(user=str(user.pk), priority="5"))
    job = WorkerJob.objects.exclude(pk=earlier.pk).get()
    assert response.status_code == 302 and response["Location"] == CHANGELIST
    assert (job.type, job.tag, job.data, job.user, job.priority) == (
        "demo.add",
        "form:1",
        {"a": 1, "b": 2},
        user,
        5,
    )
    assert job.status == Status.SCHEDULED and before <= job.due <= timezone.now()
    assert stored(earlier).status == Status.CANCELLED  # submit_job's tag rule applied


def test_adding_a_job_with_a_delay_or_a_cron_schedule(admin_client: Client) -> None:
    before = timezone.now()
    admin_client.post(ADD, form_data(tag="later", delay="600"))
    later = WorkerJob.objects.get(tag="later")
    assert later.due - before >= timedelta(seconds=600)
    admin_client.post(ADD, form_data(tag="cron", cron="*/5 * * * *", on_duplicate_tag="allow"))
    cron = WorkerJob.objects.get(tag="cron")
    assert cron.cron_schedule == "*/5 * * * *" and cron.due.minute % 5 == 0


def test_adding_a_job_at_a_due_time(admin_client: Client) -> None:
    admin_client.post(ADD, form_data(due_0="2031-05-06", due_1="07:08:09"))
    due = timezone.localtime(WorkerJob.objects.get().due)
    assert (due.year, due.month, due.day, due.hour, due.minute, due.second) == (
        2031,
        5,
        6,
        7,
        8,
        9,
    )


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        (
            {"data": '{"a": 1,}'},
            # Python's own wording of the JSON error differs between versions.
            re.compile(r"This is not valid JSON: .+ at line 1, column \d+\.$"),
        ),
        (
            {"data": '{"a": NaN}'},
            {"data": ["data['a'] is nan, which JSON cannot carry; use a finite number."]},
        ),
        ({"cron": "every day"}, "cron"),
        ({"type": "os.system"}, "type"),
        ({"tag": ""}, {"tag": ["This field is required."]}),
        ({"delay": "-5"}, "delay"),
        ({"delay": "5", "due_0": "2031-01-01", "due_1": "00:00"}, "due"),
        ({"queue": "no spaces"}, "queue"),
        ({"max_attempts": "0"}, "max_attempts"),
        ({"user": "999999"}, "user"),
    ],
)
def test_the_add_form_explains_what_is_wrong(
    admin_client: Client, fields: dict[str, str], errors: Any
) -> None:
    found = form_errors(admin_client.post(ADD, form_data(**fields)))
    if isinstance(errors, str):
        assert list(found) == [errors], found
    elif isinstance(errors, re.Pattern):
        assert list(found) == ["data"] and len(found["data"]) == 1, found
        assert errors.match(found["data"][0]), found
    else:
        assert found == errors
    assert not WorkerJob.objects.exists()


def test_the_add_form_reports_every_bad_field_at_once(admin_client: Client) -> None:
    found = form_errors(admin_client.post(ADD, form_data(data="{", cron="nope", tag="")))
    assert sorted(found) == ["cron", "data", "tag"]


def test_the_add_form_offers_no_editing_after_saving(admin_client: Client) -> None:
    page = admin_client.get(ADD).content.decode()
    assert 'name="_save"' in page and 'name="_addanother"' in page
    assert 'name="_continue"' not in page


def test_the_add_form_names_the_bad_value(admin_client: Client) -> None:
    found = form_errors(admin_client.post(ADD, form_data(cron="61 * * * *")))
    assert found["cron"][0].startswith("cron='61 * * * *' is not a valid cron string")
    found = form_errors(
        admin_client.post(ADD, form_data(delay="5", due_0="2031-01-01", due_1="0:0"))
    )
    assert "were both given" in found["due"][0]


def test_the_add_form_refuses_values_out_of_bounds(admin_client: Client) -> None:
    found = form_errors(admin_client.post(ADD, form_data(delay=str(10**12))))
    assert "100 years" in found["delay"][0]
    found = form_errors(admin_client.post(ADD, form_data(data='{"id": 18446744073709551616}')))
    assert "64-bit" in found["data"][0]
    found = form_errors(admin_client.post(ADD, form_data(data="[" * 500 + "]" * 500)))
    assert "nested more than 100 levels" in found["data"][0]
    found = form_errors(admin_client.post(ADD, form_data(due_0="9500-01-01", due_1="00:00")))
    assert "out of range" in found["due"][0]
    assert not WorkerJob.objects.exists()


# --- escaping ------------------------------------------------------------------------------


def test_job_content_is_escaped_everywhere(admin_client: Client) -> None:
    job = make_row(
        Status.RUNNING,
        tag=XSS,
        data={"html": XSS, XSS: 1},
        progress={"current": 1, "total": 2, "message": XSS},
        worker=f"{XSS}:1:0",
        queue="default",
    )
    failed = make_row(
        Status.FAILED,
        tag=f"failed {XSS}",
        result={"error": XSS},
        error_traceback=f"Traceback\nValueError: {XSS}",
        cron_schedule="",
        rescheduled_from=job,
    )
    pages = [
        admin_client.get(CHANGELIST).content.decode(),
        admin_client.get(CHANGELIST, {"q": "<script>"}).content.decode(),
        admin_client.get(page_of(job)).content.decode(),
        admin_client.get(page_of(failed)).content.decode(),
    ]
    for page in pages:
        assert "<script>alert(1)" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]  # the search box echoes it


# --- USE_TZ = False ------------------------------------------------------------------------

NAIVE_ZONE = "Asia/Kolkata"  # not UTC, so that a time shown in the wrong zone fails


@pytest.fixture
def naive_time() -> Iterator[None]:
    """The admin with USE_TZ off: every datetime naive, a wall time in TIME_ZONE."""
    with override_settings(USE_TZ=False, TIME_ZONE=NAIVE_ZONE):
        yield


def test_the_list_and_its_summary_with_use_tz_off(admin_client: Client, naive_time: None) -> None:
    running = make_row(Status.RUNNING, at=timezone.now() - timedelta(seconds=30))
    make_row(Status.SUCCEEDED, at=timezone.now() - timedelta(minutes=3))
    make_row(Status.FAILED, at=timezone.now() - timedelta(hours=3))
    later = make_row(Status.SCHEDULED, at=datetime(2031, 5, 6, 7, 8, 9))
    live_process("web1:42", workers=3)

    before = timezone.now()
    response = admin_client.get(CHANGELIST)
    after = timezone.now()

    assert response.status_code == 200
    assert later.pk in listed(response) and running.pk in listed(response)
    page = response.content.decode()
    assert '<time datetime="2031-05-06T07:08:09"' in page
    assert ">May 6, 2031, 07:08:09</time>" in page
    assert f">{running.started:%H:%M:%S}</time>" in page  # today's: the time alone
    summary = page[page.index('<section class="qw-summary') : page.index("</section>")]
    assert "<code>web1:42</code> (3 workers, all queues) last heartbeat" in summary
    charts = re.findall(r"<figure[^>]*>(.*?)</figure>", page, re.S)
    hour, _, day, _ = charts  # finished jobs, then queue waits, per hour and per day
    minutes = {f"{moment:%Y-%m-%dT%H:%M}:00" for moment in (before, after)}  # naive wall times
    assert any(f'<g data-start="{minute}"' in hour for minute in minutes), minutes
    assert hour.count('data-succeeded="1" data-failed="0"') == 1  # finished 3 min ago
    assert day.count('data-succeeded="0" data-failed="1"') == 1  # 3 h ago


def test_a_job_page_with_use_tz_off(admin_client: Client, naive_time: None) -> None:
    job = make_row(Status.SUCCEEDED, at=datetime(2031, 5, 6, 7, 8, 9))
    page = admin_client.get(page_of(job)).content.decode()
    assert '<div class="readonly"><time datetime="2031-05-06T07:08:09"' in page
    assert ">May 6, 2031, 07:08:09</time>" in page
    assert ">May 6, 2031, 07:08:11</time>" in page  # finished 2 s later

    cron = make_row(Status.SCHEDULED, cron_schedule="0 3 * * *")
    response = admin_client.get(page_of(cron))
    assert response.status_code == 200
    runs = next_runs("0 3 * * *", timezone.now(), conf.cron_time_zone, 3)
    assert all(timezone.is_naive(run) and run.hour == 3 for run in runs), runs
    for run in runs:
        assert f">{formats.date_format(run, 'M j, Y, H:i:s')}</time></li>" in (
            response.content.decode()
        )
    assert f"Schedule read in the {NAIVE_ZONE} time zone." in response.content.decode()


def test_live_rows_with_use_tz_off(admin_client: Client, naive_time: None) -> None:
    running = make_row(Status.RUNNING, at=datetime(2031, 5, 6, 7, 8, 9))
    response = admin_client.get(LIVE, {"id": [running.pk]})
    assert response.status_code == 200
    [row] = response.json()["jobs"]
    assert '<time datetime="2031-05-06T07:08:09"' in row["cells"]["started_at"]
    assert ">May 6, 2031, 07:08:09</time>" in row["cells"]["started_at"]


def test_the_date_hierarchy_with_use_tz_off(admin_client: Client, naive_time: None) -> None:
    # 23:30 in Kolkata is 18:00 UTC: read as UTC, it would still fall on the 30th; 00:30 on
    # the 31st would fall on the 30th.
    late = make_row(Status.SUCCEEDED, at=datetime(2024, 12, 30, 23, 30))
    early = make_row(Status.SUCCEEDED, at=datetime(2024, 12, 31, 0, 30))
    make_row(Status.SCHEDULED, at=datetime(2031, 1, 2))

    page = admin_client.get(CHANGELIST + "?due__year=2024&due__month=12").content.decode()
    nav = page.split('<nav class="toplinks"')[1].split("</nav>")[0]
    assert ">December 30</a>" in nav and ">December 31</a>" in nav
    response = admin_client.get(CHANGELIST + "?due__year=2024&due__month=12&due__day=31")
    assert response.status_code == 200 and listed(response) == [early.pk]
    response = admin_client.get(CHANGELIST + "?due__year=2024&due__month=12&due__day=30")
    assert listed(response) == [late.pk]
