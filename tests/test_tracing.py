"""OpenTelemetry: a span around submit_job in this process and the job's span in a real
worker process (whose settings configure the real SDK) make one trace."""

import json
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from django_quickworker import submit_job
from django_quickworker.models import Status, WorkerJob
from tests.conftest import StartRunworkers, settings_env


def read_spans(spans: Path) -> dict[int, dict[str, Any]]:
    """The worker's job spans, by job id."""
    found = [json.loads(line) for line in spans.read_text().splitlines()]
    return {
        span["attributes"]["quickworker.job.id"]: span
        for span in found
        if span["name"].startswith("quickworker.job ")
    }


def test_a_job_runs_in_the_trace_it_was_submitted_in(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    # The request's side: a tracer of our own, so no global provider leaks into other tests.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("request") as request_span:
        ok = submit_job(tag="otel:ok", type="demo.add", data={"a": 1, "b": 2})
        failing = submit_job(
            tag="otel:fail", type="demo.fail", auto_reschedule_on_failure=True, max_attempts=2
        )
    untraced = submit_job(tag="otel:none", type="demo.add", data={"a": 2, "b": 2})
    context = request_span.get_span_context()
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert ok.trace_context == {"traceparent": traceparent}
    assert untraced.trace_context is None

    spans_file = tmp_path / "spans.jsonl"
    env = settings_env("tests.otel_settings", OTEL_SPANS_FILE=str(spans_file))
    runner = start_runworkers("--burst", env=env)
    assert runner.wait() == 0, runner.output
    retry = WorkerJob.objects.get(tag="otel:fail", attempt=2)
    assert retry.status == Status.FAILED and retry.trace_context == failing.trace_context

    spans = read_spans(spans_file)
    assert sorted(spans) == sorted([ok.pk, failing.pk, retry.pk, untraced.pk])
    for job in (ok, failing, retry):
        span = spans[job.pk]
        assert span["context"]["trace_id"] == f"0x{context.trace_id:032x}"
        assert span["parent_id"] == f"0x{context.span_id:016x}"
        assert span["kind"] == "SpanKind.CONSUMER"
    assert spans[untraced.pk]["parent_id"] is None
    assert spans[untraced.pk]["context"]["trace_id"] != f"0x{context.trace_id:032x}"

    assert spans[ok.pk]["name"] == "quickworker.job demo.add"
    assert spans[ok.pk]["attributes"] == {
        "messaging.system": "quickworker",
        "quickworker.job.id": ok.pk,
        "quickworker.job.type": "demo.add",
        "quickworker.job.queue": "default",
        "quickworker.job.attempt": 1,
        "quickworker.job.outcome": "succeeded",
    }
    assert spans[ok.pk]["status"] == {"status_code": "UNSET"}
    for job, attempt in ((failing, 1), (retry, 2)):
        span = spans[job.pk]
        assert span["attributes"]["quickworker.job.attempt"] == attempt
        assert span["attributes"]["quickworker.job.outcome"] == "failed"
        assert span["status"]["status_code"] == "ERROR"
        assert span["status"]["description"] == "demo.fail failed as asked: no reason given"
        (event,) = span["events"]
        assert event["name"] == "exception"
        assert event["attributes"]["exception.type"] == "RuntimeError"
