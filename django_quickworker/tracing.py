"""OpenTelemetry traces across the hop from the code that submits a job to the worker that
runs it, when the project has configured OpenTelemetry (``django-quickworker[otel]``).

``submit_job`` stores the current trace context on the row (W3C ``traceparent`` and
``tracestate``, through the globally configured propagator), and the worker runs the job in
a span whose parent is that context: a request and the jobs it submitted are one trace.
Without OpenTelemetry, or with no span current at submission, nothing is stored or traced.
"""

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import propagate, trace
except ImportError:  # OpenTelemetry is an extra
    propagate = trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from django_quickworker.finish import Outcome
    from django_quickworker.models import WorkerJob


def current_trace_context() -> dict[str, str] | None:
    """The trace context to store on a job submitted now, or None if there is none."""
    if propagate is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


class JobSpan:
    """The span one run of a job is traced in; told the outcome when the run ends."""

    def __init__(self, span: Any) -> None:
        self.span = span

    def end_with(self, outcome: "Outcome") -> None:
        if self.span is None:
            return
        self.span.set_attribute("quickworker.job.outcome", outcome_name(outcome))
        if not outcome.success:
            error = outcome.result.get("error") if isinstance(outcome.result, dict) else None
            self.span.set_status(trace.Status(trace.StatusCode.ERROR, str(error or "failed")))


@contextlib.contextmanager
def job_span(job: "WorkerJob") -> Iterator[JobSpan]:
    """Run the block in a span for ``job``, a child of the context it was submitted in."""
    if trace is None or isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        yield JobSpan(None)  # no SDK configured: spare every job the no-op spans
        return
    parent = propagate.extract(job.trace_context) if job.trace_context else None
    tracer = trace.get_tracer("django_quickworker")
    attributes: dict[str, str | int] = {
        "messaging.system": "quickworker",
        "quickworker.job.id": job.pk,
        "quickworker.job.type": job.type,
        "quickworker.job.queue": job.queue,
        "quickworker.job.attempt": job.attempt,
    }
    with tracer.start_as_current_span(
        f"quickworker.job {job.type}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,  # the job boundary records the job's own exceptions
    ) as span:
        yield JobSpan(span)


def record_exception(error: BaseException) -> None:
    """Attach ``error``, raised by the running job, to its span."""
    if trace is not None:
        trace.get_current_span().record_exception(error)


def outcome_name(outcome: "Outcome") -> str:
    if outcome.cancelled:
        return "cancelled"
    return "succeeded" if outcome.success else "failed"
