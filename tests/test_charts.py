"""The admin summary's charts: their numbers against rows the tests write, on both of the
counting paths, and the SVG they render."""

import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone

import pytest
from django.test.utils import override_settings

from django_quickworker import charts
from django_quickworker.charts import LAST_DAY, LAST_HOUR, Bucket, finished_jobs
from django_quickworker.models import Status, WorkerJob

NOW = datetime(2026, 12, 1, 12, 30, 20, tzinfo=timezone.utc)
SVG = "{http://www.w3.org/2000/svg}"


def finished_job(finished: datetime, status: str, wait: float) -> WorkerJob:
    started = finished - timedelta(seconds=1)
    return WorkerJob(
        tag=f"chart:{finished.isoformat()}:{status}",
        type="demo.add",
        status=status,
        due=started - timedelta(seconds=wait),
        started=started,
        finished=finished,
        success=status == Status.SUCCEEDED,
    )


@pytest.fixture
def jobs() -> list[WorkerJob]:
    """Jobs finished at known minutes and hours before NOW, with known queue waits."""
    rows = [
        finished_job(NOW - timedelta(seconds=5), Status.SUCCEEDED, 2),  # this minute
        finished_job(NOW - timedelta(seconds=10), Status.SUCCEEDED, 4),
        finished_job(NOW - timedelta(seconds=15), Status.FAILED, 6),
        finished_job(NOW - timedelta(minutes=10), Status.FAILED, 30),  # 12:20
        finished_job(NOW - timedelta(hours=3), Status.SUCCEEDED, 60),  # 09:30, in the day
        finished_job(NOW - timedelta(hours=30), Status.SUCCEEDED, 1),  # too old for both
    ]
    scheduled = WorkerJob(tag="chart:waiting", type="demo.add", due=NOW)  # never counted
    return WorkerJob.objects.bulk_create([*rows, scheduled])


def by_start(buckets: list[Bucket]) -> dict[str, tuple[int, int, float | None]]:
    """The non-empty buckets, by UTC start time."""
    return {
        bucket.start.astimezone(timezone.utc).strftime("%H:%M"): (
            bucket.succeeded,
            bucket.failed,
            bucket.wait,
        )
        for bucket in buckets
        if bucket.finished
    }


EXPECTED_HOUR = {"12:30": (2, 1, 4.0), "12:20": (0, 1, 30.0)}
EXPECTED_DAY = {"12:00": (2, 2, 10.5), "09:00": (1, 0, 60.0)}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("read_limit", "group_limit"),
    [(charts.READ_LIMIT, charts.GROUP_LIMIT), (1, charts.GROUP_LIMIT), (1, 1)],
    ids=["read whole", "grouped", "bucketed"],
)
def test_jobs_per_bucket_match_the_rows(
    jobs: list[WorkerJob], read_limit: int, group_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Limits of 1 take the paths of larger windows, on the same rows.
    monkeypatch.setattr(charts, "READ_LIMIT", read_limit)
    monkeypatch.setattr(charts, "GROUP_LIMIT", group_limit)
    hour = finished_jobs(LAST_HOUR, NOW)
    assert len(hour) == 60
    assert hour[-1].start == datetime(2026, 12, 1, 12, 30, tzinfo=timezone.utc)
    assert hour[0].start == datetime(2026, 12, 1, 11, 31, tzinfo=timezone.utc)
    assert by_start(hour) == EXPECTED_HOUR
    day = finished_jobs(LAST_DAY, NOW)
    assert len(day) == 24
    assert day[-1].start == datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    assert by_start(day) == EXPECTED_DAY


@pytest.mark.django_db
def test_the_charts_are_svg_with_the_numbers_in_them(jobs: list[WorkerJob]) -> None:
    finished_svg, wait_svg, day_svg, day_wait_svg = charts.summary_charts(NOW)
    root = ElementTree.fromstring(str(finished_svg))
    assert root.tag == f"{SVG}svg"
    assert root.find(f"{SVG}title").text == "Jobs finished, last hour, per minute"  # type: ignore[union-attr]
    bars = root.findall(f"{SVG}g")
    assert len(bars) == 60
    last = bars[-1]
    assert (last.get("data-succeeded"), last.get("data-failed")) == ("2", "1")
    assert last.find(f"{SVG}title").text == "12:30: 2 succeeded, 1 failed"  # type: ignore[union-attr]
    # Stacked: the failed bar sits on the succeeded one, half its height (1 job against 2).
    succeeded_bar, failed_bar = last.findall(f"{SVG}rect")
    assert float(failed_bar.get("height", 0)) * 2 == pytest.approx(
        float(succeeded_bar.get("height", 0))
    )
    assert float(failed_bar.get("y", 0)) + float(failed_bar.get("height", 0)) == pytest.approx(
        float(succeeded_bar.get("y", 0))
    )
    assert "<script" not in str(finished_svg)

    waits = ElementTree.fromstring(str(wait_svg)).findall(f"{SVG}g")
    assert [bar.get("data-wait") for bar in waits] == ["30.000", "4.000"]  # empty minutes: no bar
    day_bars = ElementTree.fromstring(str(day_svg)).findall(f"{SVG}g")
    assert sum(int(bar.get("data-succeeded", 0)) for bar in day_bars) == 3
    assert "Queue wait, last day, per hour" in str(day_wait_svg)


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 0), (1, 1), (3, 5), (7, 10), (12, 20), (450, 500), (0.3, 0.5)]
)
def test_the_value_axis_ends_at_a_round_number(value: float, ceiling: float) -> None:
    assert charts.nice_ceiling(value) == pytest.approx(ceiling)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("read_limit", "group_limit"),
    [(charts.READ_LIMIT, charts.GROUP_LIMIT), (1, charts.GROUP_LIMIT), (1, 1)],
    ids=["read whole", "grouped", "bucketed"],
)
def test_jobs_per_bucket_with_use_tz_off(
    read_limit: int, group_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Naive times, wall times in a zone half an hour off UTC: the buckets are that zone's
    minutes and hours, on every counting path."""
    monkeypatch.setattr(charts, "READ_LIMIT", read_limit)
    monkeypatch.setattr(charts, "GROUP_LIMIT", group_limit)
    now = NOW.replace(tzinfo=None)
    with override_settings(USE_TZ=False, TIME_ZONE="Asia/Kolkata"):
        WorkerJob.objects.bulk_create(
            [
                finished_job(now - timedelta(seconds=5), Status.SUCCEEDED, 2),
                finished_job(now - timedelta(minutes=10), Status.FAILED, 30),
                finished_job(now - timedelta(hours=3), Status.SUCCEEDED, 60),
            ]
        )
        hour = finished_jobs(LAST_HOUR, now)
        day = finished_jobs(LAST_DAY, now)

    assert hour[-1].start == datetime(2026, 12, 1, 12, 30) and len(hour) == 60
    assert {b.start.strftime("%H:%M"): (b.succeeded, b.failed) for b in hour if b.finished} == {
        "12:30": (1, 0),
        "12:20": (0, 1),
    }
    assert day[-1].start == datetime(2026, 12, 1, 12) and len(day) == 24
    assert {b.start.strftime("%H:%M"): (b.succeeded, b.failed) for b in day if b.finished} == {
        "12:00": (1, 1),
        "09:00": (1, 0),
    }
