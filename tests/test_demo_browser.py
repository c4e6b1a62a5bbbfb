"""The demo in a real browser, as ``./demo.sh`` runs it: ``runworkers --workers 2 --serve``,
web pages, websockets and workers in one process tree on the in-memory channel layer.
Headless Chromium (Debian's ``chromium`` package) under Playwright; it fails, rather than
skips, when either is missing.

With ``WRITE_DEMO_SCREENSHOT=1`` it also writes the README's screenshot, ``docs/demo.png``,
from the page it has just checked: jobs running and finished, so the picture stays true.
"""

import io
import os
from typing import TYPE_CHECKING

import pytest
from django.core.management import call_command

from django_quickworker.models import Status, WorkerJob
from tests.conftest import REPO, StartRunworkers
from tests.test_admin_browser import chromium
from tests.test_live import free_port, wait_for_port

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Response

# Once per CI run (heavy: the py313-dj61 env): the page is the same on every Python and Django.
pytestmark = [pytest.mark.sqlite, pytest.mark.heavy]

SCREENSHOT = REPO / "docs" / "demo.png"
# Clicked in this order; the second countdown waits for a free worker.
BUTTONS = ["Fail", "Add 20 + 22", "Sleep 2 s (async)", "Count down 10 steps", "Count down 10 steps"]
# Jobs running and finished at once: the sleep is done while a countdown is under way.
RUNNING_AND_FINISHED = """() => {
  const rows = [...document.querySelectorAll("#jobs tr")].map((tr) => ({
    type: tr.querySelector("code").textContent,
    status: tr.querySelector(".status").textContent,
    step: tr.querySelector("progress").value,
  }));
  const done = (type) => rows.some((r) => r.type === type && r.status !== "running"
    && r.status !== "scheduled");
  return ["demo.fail", "demo.add", "demo.asyncSleep"].every(done)
    && rows.some((r) => r.type === "demo.countdown" && r.status === "running" && r.step >= 3);
}"""
ALL_FINISHED = """(count) => {
  const statuses = [...document.querySelectorAll("#jobs .status")].map((td) => td.textContent);
  return statuses.length === count && statuses.every((s) => s === "succeeded" || s === "failed");
}"""


def results(page: "Page") -> dict[str, str]:
    """Each job row's result cell, by row id."""
    rows = page.locator("#jobs tr")
    return {
        rows.nth(index).get_attribute("id") or "": rows.nth(index).locator(".result").inner_text()
        for index in range(rows.count())
    }


def test_the_demo_shows_jobs_live_on_a_desktop_and_on_a_phone(
    start_runworkers: StartRunworkers,
) -> None:
    call_command("demo_user", stdout=io.StringIO())
    port = free_port()
    runner = start_runworkers(
        "--workers",
        "2",
        "--serve",
        f"127.0.0.1:{port}",
        env={"QUICKWORKER": '{"POLL_INTERVAL": 0.25}', "REDIS_URL": ""},
    )
    wait_for_port(port, lambda: runner.process.poll() is None, lambda: runner.output)
    site = f"http://127.0.0.1:{port}"
    problems: list[str] = []  # failed requests and console errors, on any page

    def on_response(response: "Response") -> None:
        if response.status >= 400:
            problems.append(f"{response.status} {response.url}")

    def on_console(message: "ConsoleMessage") -> None:
        if message.type == "error":
            problems.append(message.text)

    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1000, "height": 300})
        context.on("response", on_response)
        page = context.new_page()
        page.on("console", on_console)
        page.set_default_timeout(30_000)

        page.goto(f"{site}/")  # sends us to sign in, which says how
        credentials = page.locator(".demo-credentials").inner_text()
        assert "Sign in as demo, password demo" in credentials
        page.fill("#id_username", "demo")
        page.fill("#id_password", "demo")
        page.click("input[type=submit]")
        page.wait_for_url(f"{site}/")
        page.locator("#socket", has_text="live updates: open").wait_for()

        # --serve served the static files: the helper runs, the favicon is there.
        assert page.evaluate("typeof QuickWorker.connect") == "function"
        icon = page.locator("link[rel=icon]").get_attribute("href")
        assert icon and page.request.get(f"{site}{icon}").headers["content-type"] == "image/svg+xml"
        redirected = page.request.get(f"{site}/favicon.ico")  # for pages that name no icon
        assert (redirected.status, redirected.url) == (200, f"{site}{icon}")

        for button in BUTTONS:
            page.click(f"text={button}")
        page.wait_for_function(RUNNING_AND_FINISHED)
        if os.environ.get("WRITE_DEMO_SCREENSHOT"):
            page.screenshot(path=SCREENSHOT, full_page=True)
        page.wait_for_function(ALL_FINISHED, arg=len(BUTTONS))
        live = results(page)
        assert live[next(k for k in live if "sum" in live[k])] == '{"sum":42}'

        page.reload()
        assert results(page) == live  # one formatting, live and from the database

        page.goto(f"{site}/admin/")  # the admin, styled by its static files
        header = page.evaluate(
            "getComputedStyle(document.getElementById('header')).backgroundColor"
        )
        assert header not in ("rgba(0, 0, 0, 0)", "transparent"), header

        phone = browser.new_context(  # signed in, as the desktop is
            viewport={"width": 390, "height": 844},
            is_mobile=True,
            has_touch=True,
            storage_state=context.storage_state(),
        )
        small = phone.new_page()
        small.goto(f"{site}/")
        # Without the viewport meta a phone lays pages out 980 px wide, then shrinks them.
        assert small.evaluate("window.innerWidth") == 390
        assert small.evaluate("document.documentElement.scrollWidth") <= 390
        assert small.locator("#jobs tr").count() == len(BUTTONS)
        phone.close()
        context.close()

    assert problems == []
    statuses = sorted(WorkerJob.objects.filter(user__username="demo").values_list("type", "status"))
    assert statuses == [
        ("demo.add", Status.SUCCEEDED),
        ("demo.asyncSleep", Status.SUCCEEDED),
        ("demo.countdown", Status.SUCCEEDED),
        ("demo.countdown", Status.SUCCEEDED),
        ("demo.fail", Status.FAILED),
    ]
