"""Prometheus metrics: a real ``runworkers --metrics`` scraped over HTTP, the Django view on
the test database, and the reference table in docs/observability.rst kept true."""

import re
import signal
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from demo.dbserver import free_port
from django_quickworker import submit_job
from django_quickworker.models import Status, WorkerJob, WorkerProcess
from tests.conftest import StartRunworkers, wait_until
from tests.test_health import health

DOCS = Path(__file__).resolve().parent.parent / "docs" / "observability.rst"
FAST_POLL = {"QUICKWORKER": '{"POLL_INTERVAL": 0.1}'}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return str(response.read().decode())


def samples(text: str) -> Samples:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: Samples, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def families(text: str) -> dict[str, tuple[str, list[str]]]:
    """Our metrics in a scrape: documented name -> (type, label names)."""
    found = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("quickworker_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {label for sample in family.samples for label in sample.labels} - {"le"}
        found[name] = (family.type, sorted(labels))
    return found


def documented(served_by: str) -> dict[str, tuple[str, list[str]]]:
    """The reference table's rows served by ``served_by``: name -> (type, label names)."""
    rows = re.findall(
        r"^   \* - ``(\w+)``\n     - (\w+)\n     -(.*)\n     - (\w+)\n", DOCS.read_text(), re.M
    )
    return {
        name: (kind, sorted(re.findall(r"``(\w+)``", labels)))
        for name, kind, labels, source in rows
        if source == served_by
    }


def finished(tags: list[str]) -> bool:
    jobs = WorkerJob.objects.filter(tag__in=tags)
    return not jobs.filter(status__in=[Status.SCHEDULED, Status.RUNNING]).exists()


def test_runworkers_counts_what_its_workers_report(start_runworkers: StartRunworkers) -> None:
    two_minutes_ago = timezone.now() - timedelta(minutes=2)
    submit_job(tag="m:add", type="demo.add", data={"a": 1, "b": 2}, due=two_minutes_ago)
    submit_job(tag="m:fail", type="demo.fail", auto_reschedule_on_failure=True, max_attempts=2)
    submit_job(tag="m:slow", type="demo.record", data={"seconds": 30}, timeout=1, queue="slow")
    submit_job(tag="m:crash", type="demo.record", data={"exit": 3}, queue="slow")
    port = free_port()
    runner = start_runworkers("--workers", "2", "--metrics", f"127.0.0.1:{port}", env=FAST_POLL)
    tags = ["m:add", "m:fail", "m:slow", "m:crash"]
    wait_until(lambda: finished(tags), timeout=60, what=f"the jobs to finish\n{runner.output}")
    wait_until(lambda: value(samples(scrape(port)), "quickworker_workers", state="idle") == 2)
    text = scrape(port)
    scraped = samples(text)

    def jobs(job_type: str, queue: str, outcome: str) -> float:
        return value(scraped, "quickworker_jobs_total", type=job_type, queue=queue, outcome=outcome)

    assert jobs("demo.add", "default", "succeeded") == 1
    assert jobs("demo.fail", "default", "failed") == 2
    assert jobs("demo.record", "slow", "timed_out") == 1
    assert jobs("demo.record", "slow", "crashed") == 1
    started = "quickworker_jobs_started_total"
    assert value(scraped, started, type="demo.fail", queue="default") == 2
    assert value(scraped, started, type="demo.record", queue="slow") == 2
    assert value(scraped, "quickworker_jobs_retried_total", type="demo.fail", queue="default") == 1
    assert value(scraped, "quickworker_worker_restarts_total", reason="ended") == 1
    assert value(scraped, "quickworker_worker_restarts_total", reason="crashed") == 1
    assert value(scraped, "quickworker_workers", state="busy") == 0
    assert value(scraped, "quickworker_job_duration_seconds_count", type="demo.record") == 2
    assert value(scraped, "quickworker_job_duration_seconds_sum", type="demo.record") >= 1
    # The first job was due two minutes before any worker could start it.
    assert value(scraped, "quickworker_job_queue_wait_seconds_sum", type="demo.add") >= 120
    wait_le_60 = value(
        scraped, "quickworker_job_queue_wait_seconds_bucket", type="demo.add", le="60.0"
    )
    assert wait_le_60 == 0
    assert value(scraped, "quickworker_relay_dropped_messages_total", reason="queue_full") == 0
    assert families(text) == documented("runworkers")
    runner.send(signal.SIGTERM)
    assert runner.wait() == 0, runner.output


def test_healthz_answers_ok_while_the_parent_works(start_runworkers: StartRunworkers) -> None:
    port = free_port()
    runner = start_runworkers("--metrics", str(port), env=FAST_POLL)
    wait_until(lambda: listening(port), what="the metrics port")
    assert health(port) == (200, {"status": "ok", "problems": []})
    with pytest.raises(urllib.error.HTTPError) as error:
        scrape(port, "/nothing")
    assert error.value.code == 404

    # Draining after a SIGTERM, the parent is out of service.
    job = submit_job(tag="h:slow", type="demo.record", data={"seconds": 3})
    wait_until(lambda: WorkerJob.objects.get(pk=job.pk).status == Status.RUNNING)
    runner.send(signal.SIGTERM)
    wait_until(lambda: health(port)[0] == 503, what="a 503 while stopping")
    assert health(port)[1]["problems"] == [
        "runworkers is stopping: its workers finish their jobs and exit."
    ]
    assert runner.wait() == 0, runner.output
    assert WorkerJob.objects.get(pk=job.pk).status == Status.SUCCEEDED


def listening(port: int) -> bool:
    try:
        scrape(port, "/metrics")
    except OSError:
        return False
    return True


@pytest.mark.parametrize("bad", ["host", "127.0.0.1:", "127.0.0.1:70000"])
def test_a_bad_metrics_address_is_refused(start_runworkers: StartRunworkers, bad: str) -> None:
    runner = start_runworkers("--metrics", bad)
    assert runner.wait() == 2
    assert f"--metrics={bad!r} is not an address" in runner.output


@pytest.mark.django_db
def test_the_view_reads_the_queue_from_the_database(client: Client) -> None:
    now = timezone.now()
    submit_job(tag="v:1", type="demo.add", due=now - timedelta(seconds=90), queue="mail")
    submit_job(tag="v:2", type="demo.add", due=now + timedelta(hours=1), queue="mail")
    submit_job(tag="v:3", type="demo.add", queue="default")
    WorkerJob.objects.filter(tag="v:3").update(
        status=Status.RUNNING,
        started=now,
        worker="gone:1:0",
        lease_expires=now - timedelta(hours=1),
    )
    WorkerProcess.objects.create(
        name="host:42", workers=2, version="0", started=now, heartbeat=now, types=["demo.add"]
    )
    submit_job(tag="v:4", type="demo.fail", queue="mail")  # a type host:42 does not run
    response = client.get("/metrics/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    scraped = samples(text)
    assert value(scraped, "quickworker_queue_jobs", queue="mail", status="scheduled") == 3
    assert value(scraped, "quickworker_queue_jobs", queue="default", status="running") == 1
    assert value(scraped, "quickworker_queue_jobs", queue="default", status="scheduled") == 0
    age = value(scraped, "quickworker_queue_oldest_due_age_seconds", queue="mail")
    assert 90 <= age < 120
    assert value(scraped, "quickworker_queue_oldest_due_age_seconds", queue="default") == 0
    assert value(scraped, "quickworker_expired_lease_jobs") == 1
    assert value(scraped, "quickworker_runworkers_alive") == 1
    heartbeat = "quickworker_runworkers_heartbeat_timestamp_seconds"
    assert value(scraped, heartbeat, runworkers="host:42") == pytest.approx(now.timestamp())
    assert value(scraped, "quickworker_unknown_type_jobs", type="demo.fail") == 1
    assert ("quickworker_unknown_type_jobs", (("type", "demo.add"),)) not in scraped
    assert families(text) == documented("view")


def test_the_reference_table_is_not_empty() -> None:
    assert len(documented("runworkers")) >= 8 and len(documented("view")) >= 4
