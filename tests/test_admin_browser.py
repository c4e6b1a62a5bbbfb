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

from django_quickworker.models import Status, WorkerJob
from tests.conftest import StartRunworkers
from tests.test_status import make_row

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

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


def test_an_operator_retries_a_failed_job(
    live_server: Any, start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    User.objects.create_superuser("ops", "ops@example.com", PASSWORD)
    make_row(Status.SUCCEEDED, tag="report:1")
    make_row(Status.SCHEDULED, tag="later:1", at=make_row().due.replace(year=2099))
    crashed = make_row(
        Status.FAILED,
        tag="sum:2+3",
        data={"a": 2, "b": 3},
        result={"error": "Worker host:1:0 died (killed by signal 9)."},
    )
    workers = start_runworkers("--workers", "1", env=FAST_POLL)
    shots = [tmp_path / "admin-job.png", tmp_path / "admin-list.png"]

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(15_000)
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.click("text=Worker jobs")

        page.locator("#changelist-filter a", has_text=re.compile("^Failed$")).click()
        page.wait_for_url(re.compile(r"status__exact=failed"))
        rows = page.locator("#result_list tbody tr")
        assert rows.count() == 1, rows.all_inner_texts()
        assert "sum:2+3" in rows.first.inner_text()

        page.check(f"input[name=_selected_action][value='{crashed.pk}']")
        page.select_option("select[name=action]", "retry")
        page.click("button[name=index]")
        message = page.locator(".messagelist li").first.inner_text()
        found = re.fullmatch(r"Retried 1 job as #(\d+)\.", message)
        assert found, message
        retry_id = int(found.group(1))

        page.goto(f"{live_server.url}/admin/quickworker/workerjob/{crashed.pk}/change/")
        page.locator(".qw-chain a", has_text=f"#{retry_id}").click()
        for _attempt in range(60):
            if badge_of(page) == "Succeeded":
                break
            assert workers.process.poll() is None, f"runworkers exited:\n{workers.output}"
            page.wait_for_timeout(500)
            page.reload()
        assert badge_of(page) == "Succeeded"
        assert '"sum": 5' in page.locator(".field-result_json pre").inner_text()
        page.screenshot(path=shots[0], full_page=True)

        page.goto(f"{live_server.url}/admin/quickworker/workerjob/")
        page.click("#toggle-nav-sidebar")  # room for every column
        assert page.locator(".qw-summary").is_visible()
        page.screenshot(path=shots[1], full_page=True)

    retry = WorkerJob.objects.get(pk=retry_id)
    assert retry.rescheduled_from_id == crashed.pk
    assert (retry.status, retry.result) == (Status.SUCCEEDED, {"sum": 5})
    for shot in shots:
        assert shot.is_file() and shot.stat().st_size > 20_000, shot
