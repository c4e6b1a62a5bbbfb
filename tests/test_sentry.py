"""Failed jobs reach Sentry: real runworkers whose settings initialise the real sentry_sdk,
with a transport that writes each event to a file this test reads."""

import json
from pathlib import Path
from typing import Any

from django_quickworker import submit_job
from django_quickworker.models import Status, WorkerJob
from tests.conftest import StartRunworkers, settings_env


def read_events(events: Path) -> list[dict[str, Any]]:
    if not events.exists():
        return []
    return [json.loads(line) for line in events.read_text().splitlines()]


def test_each_failed_attempt_is_one_sentry_event(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    data = {"reason": "boom", **{f"key{i:02}": i for i in range(30)}}
    failing = submit_job(
        tag="sentry:fail",
        type="demo.fail",
        data=data,
        auto_reschedule_on_failure=True,
        max_attempts=2,
    )
    submit_job(tag="sentry:ok", type="demo.add", data={"a": 1, "b": 2})
    env = settings_env("tests.sentry_settings", SENTRY_EVENTS_FILE=str(events))
    runner = start_runworkers("--burst", env=env)
    assert runner.wait() == 0, runner.output
    rows = list(WorkerJob.objects.filter(tag="sentry:fail").order_by("attempt"))
    assert [row.status for row in rows] == [Status.FAILED, Status.FAILED]
    assert WorkerJob.objects.get(tag="sentry:ok").status == Status.SUCCEEDED

    captured = read_events(events)
    assert len(captured) == 2, captured  # one per failed attempt; none for the success
    for row, event in zip(rows, captured, strict=True):
        (exception,) = event["exception"]["values"]
        assert exception["type"] == "RuntimeError"
        assert exception["value"] == "demo.fail failed as asked: boom"
        assert exception["stacktrace"]["frames"][-1]["function"] == "fail"
        assert event["tags"] == {
            "job.id": str(row.pk),
            "job.type": "demo.fail",
            "job.tag": "sentry:fail",
            "job.queue": "default",
            "job.attempt": str(row.attempt),
        } | {key: value for key, value in event["tags"].items() if not key.startswith("job.")}
        assert event["fingerprint"] == ["quickworker", "demo.fail", "builtins.RuntimeError"]
        context = event["contexts"]["job"]
        assert context["id"] == row.pk and context["attempt"] == row.attempt
        assert context["type"] == "demo.fail" and context["max_attempts"] == 2
        # Sentry trims the data as it trims all extra data: ten keys of the 31 (which ten
        # depends on the database: PostgreSQL's jsonb orders keys its own way).
        trimmed = event["extra"]["job_data"]
        assert len(trimmed) == 10 and trimmed.items() <= data.items(), trimmed
    assert rows[0].pk == failing.pk
