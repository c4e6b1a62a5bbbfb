"""The admin in a real browser: headless Chromium (Debian's ``chromium`` package) driven by
Playwright, against a live server and real runworkers processes.

It runs on SQLite only, to keep the database matrix lean; it fails, rather than skips, when
Chromium or Playwright is missing, so that CI cannot pass without having run it.
"""

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from django_quickworker import submit_job
from django_quickworker.models import Status, WorkerJob
from tests.conftest import StartRunworkers
from tests.test_overview import make_row

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.sqlite

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"
FAST_POLL = {"QUICKWORKER": '{"POLL_INTERVAL": 0.1}'}


@contextlib.contextmanager
def chromium() -> Iterator["Browser"]:
    """Headless Chromium under Playwright; fail with what to install when either is missing.

    Opened after the test has written its rows and closed before it reads them: Playwright's
    event loop would make Django refuse database calls in between.
    """
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}. Install Debian's package "
            "(apt-get install -y chromium) or point the CHROMIUM variable at a Chromium binary."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is not installed: pip install playwright.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def badge_of(page: "Page") -> str:
    return page.locator(".field-status_display .qw-badge").inner_text()


def row_of(page: "Page", job_id: int) -> "Locator":
    return page.locator(f"#result_list tbody tr:has([data-qw-job='{job_id}'])")


def log_in(page: "Page", url: str) -> None:
    page.goto(f"{url}/admin/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def off_screen_columns(page: "Page") -> list[str]:
    """The list's column headers that end past the window's right edge, or past that of
    the box around the table (Django scrolls a table too wide for it)."""
    page.locator("#result_list").wait_for()
    return list(
        page.evaluate(
            """() => {
                const box = document.querySelector("#changelist-form .results");
                const edge = Math.min(
                    box.getBoundingClientRect().right, document.documentElement.clientWidth
                );
                return [...document.querySelectorAll("#result_list thead th")]
                    .filter((th) => th.getBoundingClientRect().right > edge + 0.5)
                    .map((th) => th.innerText || th.className);
            }"""
        )
    )


def test_an_operator_retries_a_failed_job_and_watches_it_run(
    live_server: Any, start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    """At a 1,366 px laptop's width, with Django's sidebars as they come: every column in
    view, a running job's progress and a retry's outcome redrawn without a reload."""
    User.objects.create_superuser("ops", "ops@example.com", PASSWORD)
    make_row(Status.SUCCEEDED, tag="report:1")
    later = make_row(
        Status.SCHEDULED,
        tag="later:1",
        type="demo.countdown",
        data={"steps": 3, "interval": 1},
        at=timezone.now().replace(year=2099),
    )
    crashed = make_row(
        Status.FAILED,
        tag="sum:2+3",
        data={"a": 2, "b": 3},
        result={"error": "Worker host:1:0 died (killed by signal 9)."},
    )
    counting = submit_job(tag="count:1", type="demo.countdown", data={"steps": 20, "interval": 1})
    workers = start_runworkers("--workers", "2", env=FAST_POLL)
    shots = [tmp_path / "admin-list-1366.png", tmp_path / "admin-job.png"]

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(30_000)
        log_in(page, live_server.url)
        page.click("text=Worker jobs")
        assert off_screen_columns(page) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 1366

        # A reload would drop this mark: the rows below change in place.
        page.evaluate("window.qwNotReloaded = true")
        progress = row_of(page, counting.pk).locator("progress")
        progress.wait_for()
        first = int(progress.get_attribute("value") or 0)
        # Its bar moves on; or, if the job was at its last steps, its row turns Succeeded.
        page.wait_for_function(
            """([selector, first]) => {
                const row = document.querySelector(selector);
                const bar = row?.querySelector("progress");
                if (bar) return Number(bar.value) > first;
                return /Succeeded/.test(row?.querySelector(".qw-badge")?.innerText ?? "");
            }""",
            arg=[f"#result_list tr:has([data-qw-job='{counting.pk}'])", first],
        )
        assert workers.process.poll() is None, f"runworkers exited:\n{workers.output}"
        assert page.evaluate("window.qwNotReloaded") is True

        page.check(f"input[name=_selected_action][value='{crashed.pk}']")
        page.select_option("select[name=action]", "retry")
        page.click("button[name=index]")
        message = page.locator(".messagelist li").first.inner_text()
        found = re.fullmatch(r"Retried 1 job as #(\d+)\.", message)
        assert found, message
        retry_id = int(found.group(1))
        page.evaluate("window.qwNotReloaded = true")
        for job_id in (retry_id, counting.pk):
            badge = row_of(page, job_id).locator(".qw-badge")
            badge.filter(has_text="Succeeded").wait_for()
        assert page.evaluate("window.qwNotReloaded") is True
        assert off_screen_columns(page) == []
        page.screenshot(path=shots[0], full_page=True)

        page.goto(f"{live_server.url}/admin/quickworker/workerjob/{crashed.pk}/change/")
        page.locator(".qw-chain a", has_text=f"#{retry_id}").click()
        assert badge_of(page) == "Succeeded"
        assert '"sum": 5' in page.locator(".field-result_json pre").inner_text()
        started = page.locator(".field-started_time .readonly").inner_text()
        assert re.search(r"\d{2}:\d{2}:\d{2}$", started), started  # to the second
        page.screenshot(path=shots[1], full_page=True)

        # A job's page follows its job: run one now (it takes 3 s), and the page reloads
        # itself when the job's status changes.
        page.goto(f"{live_server.url}/admin/quickworker/workerjob/{later.pk}/change/")
        page.click("button.qw-action-run_now")
        page.locator(".messagelist li", has_text="Set 1 job to run now").wait_for()
        page.evaluate("window.qwNotReloaded = true")
        page.locator(".field-status_display .qw-badge", has_text="Succeeded").wait_for()
        assert page.evaluate("window.qwNotReloaded") is None

    retry = WorkerJob.objects.get(pk=retry_id)
    assert retry.rescheduled_from_id == crashed.pk
    assert (retry.status, retry.result) == (Status.SUCCEEDED, {"sum": 5})
    for shot in shots:
        assert shot.is_file() and shot.stat().st_size > 20_000, shot
