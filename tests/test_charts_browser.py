"""The summary's charts in a real browser: headless Chromium reads their numbers, in
Django's light and dark themes, and takes a screenshot of each."""

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from django_quickworker.models import Status, WorkerJob
from tests.test_admin_browser import PASSWORD, chromium
from tests.test_charts import finished_job

# Once per CI run (heavy: the py313-dj61 env): the page is the same on every Python and Django.
pytestmark = [pytest.mark.sqlite, pytest.mark.heavy]


@pytest.mark.django_db(transaction=True)
def test_the_charts_show_the_jobs_that_finished(live_server: Any, tmp_path: Path) -> None:
    User.objects.create_superuser("ops", "ops@example.com", PASSWORD)
    now = timezone.now()
    minutes_ago = [1, 1, 1, 2, 5, 5, 20, 40]
    rows = [finished_job(now - timedelta(minutes=m), Status.SUCCEEDED, 3) for m in minutes_ago]
    rows += [finished_job(now - timedelta(minutes=m), Status.FAILED, 9) for m in (1, 5, 5)]
    rows += [finished_job(now - timedelta(hours=h), Status.SUCCEEDED, 60) for h in (3, 3, 7)]
    WorkerJob.objects.bulk_create(rows)
    in_the_hour = [row for row in rows if row.finished and row.finished > now - timedelta(hours=1)]

    themes: list[Literal["light", "dark"]] = ["light", "dark"]
    shots = {theme: tmp_path / f"charts-{theme}.png" for theme in themes}
    with chromium() as browser:
        for theme, shot in shots.items():
            page = browser.new_page(viewport={"width": 1400, "height": 900}, color_scheme=theme)
            page.set_default_timeout(15_000)
            page.goto(f"{live_server.url}/admin/login/?next=/admin/quickworker/workerjob/")
            page.fill("#id_username", "ops")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            charts = page.locator(".qw-charts svg")
            charts.first.wait_for()
            assert charts.count() == 4
            hour = charts.nth(0)
            assert hour.get_attribute("aria-label") == "Jobs finished, last hour, per minute"
            bars = hour.locator("g")
            assert bars.count() == 60
            succeeded = sum(
                int(bars.nth(i).get_attribute("data-succeeded") or 0) for i in range(60)
            )
            failed = sum(int(bars.nth(i).get_attribute("data-failed") or 0) for i in range(60))
            assert (succeeded, failed) == (
                sum(row.status == Status.SUCCEEDED for row in in_the_hour),
                sum(row.status == Status.FAILED for row in in_the_hour),
            )
            day = charts.nth(2).locator("g")
            assert (
                sum(int(day.nth(i).get_attribute("data-succeeded") or 0) for i in range(24)) == 11
            )
            # The day's wait chart: the hours of the 60 s waits stand out.
            waits = [
                charts.nth(3).locator("g").nth(i).get_attribute("data-wait")
                for i in range(charts.nth(3).locator("g").count())
            ]
            assert "60.000" in waits
            # Legible in both themes: the axis labels take the theme's quiet text colour.
            label_color = hour.locator("text").first.evaluate("e => getComputedStyle(e).fill")
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert label_color != background
            assert re.fullmatch(r"rgb\(\d+, \d+, \d+\)", label_color), label_color
            page.locator(".qw-summary").screenshot(path=shot)
            page.close()
    for shot in shots.values():
        assert shot.is_file() and shot.stat().st_size > 10_000, shot
