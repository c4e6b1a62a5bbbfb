"""The test project's settings with OpenTelemetry's SDK configured, for workers the tracing
tests start.

Spans go to the SDK's in-memory exporter, and from it, as JSON, to the file named by
``OTEL_SPANS_FILE``: the real SDK does everything up to the collector.
"""

import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from testproject.settings import *  # noqa: F403


class FileExporter(InMemorySpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(os.environ["OTEL_SPANS_FILE"], "a") as file:
            file.writelines(span.to_json(indent=None) + "\n" for span in spans)
        return super().export(spans)


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
trace.set_tracer_provider(provider)
