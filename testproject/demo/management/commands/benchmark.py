"""``manage.py benchmark``: throughput, latency, enqueue rate, scale and memory of the queue,
beside the raw SQL ceiling measured in the same run on the same database."""

import json
import statistics
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.test.utils import override_settings

from demo import benchmark

SECTIONS = ("throughput", "latency", "enqueue", "tasks", "scale", "memory", "idle")


class Command(BaseCommand):
    help = "Measure the queue on the configured database and print a table (or write JSON)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--jobs", type=int, default=5000, help="(default: %(default)r)")
        parser.add_argument("--workers", type=int, default=2, help="(default: %(default)r)")
        parser.add_argument(
            "--only", default=",".join(SECTIONS), help="Comma-separated sections to run."
        )
        parser.add_argument(
            "--rounds", type=int, default=3, help="Throughput rounds (default: %(default)r)."
        )
        parser.add_argument("--scale-rows", type=int, default=1_000_000)
        parser.add_argument("--memory-jobs", type=int, default=100_000)
        parser.add_argument("--idle-workers", type=int, default=4, help="(default: %(default)r)")
        parser.add_argument("--json", dest="json_path", help="Also write the results here.")

    def handle(self, *args: Any, **options: Any) -> None:
        # As in production, and as the workers it starts run: with DEBUG on, Django logs
        # every query this process sends, which cost submit_job over a third of its rate.
        with override_settings(DEBUG=False):
            results = measure(options)
        self.stdout.write(report(results))
        if options["json_path"]:
            with open(options["json_path"], "w") as output:
                json.dump(results, output, indent=2)


def measure(options: dict[str, Any]) -> dict[str, Any]:
    """Run the sections ``options`` ask for; return their results."""
    sections = options["only"].split(",")
    jobs, workers = options["jobs"], options["workers"]
    results: dict[str, Any] = {"database": connection.vendor, "jobs": jobs, "workers": workers}
    benchmark.clear()
    try:
        if "throughput" in sections or "scale" in sections:
            # Side by side, alternating, several times: the median ratio is what counts
            # on a machine shared with other work.
            rounds = []
            for _ in range(options["rounds"]):
                minimal = benchmark.minimal_ceiling(jobs, workers)
                ceiling = benchmark.ceiling(jobs, workers)
                benchmark.clear()
                ours = benchmark.throughput(jobs, workers)
                benchmark.clear()
                rate = ours["jobs_per_s"]
                rounds.append(
                    {
                        **ours,
                        "minimal": minimal,
                        "ceiling": ceiling,
                        "ratio": rate / ceiling,
                        "minimal_ratio": rate / minimal,
                    }
                )
            results["throughput_rounds"] = rounds
            middle = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
            results["ceiling_jobs_per_s"] = middle["ceiling"]
            results["throughput_jobs_per_s"] = middle["jobs_per_s"]
        if "latency" in sections:
            results["latency_ms"] = benchmark.latency(200, 0.02, workers)
            if connection.vendor == "postgresql":  # the only one that wakes by NOTIFY
                results["latency_floor_ms"] = benchmark.latency_floor(200, 0.02)
            benchmark.clear()
        if "enqueue" in sections:
            # Into a table holding finished jobs, as a project's does (they are kept for a
            # week): on PostgreSQL, statements prepared on a nearly empty table keep plans
            # that scan it whole until autovacuum analyzes it, which this server never does.
            benchmark.add_finished_rows(benchmark.FINISHED_ROWS_KEPT)
            results["enqueue_jobs_per_s"] = benchmark.enqueue_single(2000)
            benchmark.clear()
            results["bulk_rounds"] = benchmark.enqueue_bulk(20_000, options["rounds"])
        if "tasks" in sections:
            results["tasks"] = tasks_against_jobs(jobs, workers, options["rounds"])
        if "scale" in sections:
            benchmark.add_finished_rows(options["scale_rows"])
            results["scale_rows"] = options["scale_rows"]
            scaled = benchmark.throughput(jobs, workers, "scaled")
            results["scaled_jobs_per_s"] = scaled["jobs_per_s"]
            benchmark.clear()
        if "memory" in sections:
            count = options["memory_jobs"]
            checkpoints = (min(10_000, count // 10), count)
            results["memory"] = benchmark.memory(count, workers, checkpoints)
        if "idle" in sections:
            results["idle"] = benchmark.idle(options["idle_workers"])
            benchmark.clear()
    finally:
        benchmark.clear()
    return results


def tasks_against_jobs(jobs: int, workers: int, rounds: int) -> dict[str, Any]:
    """Django's Tasks API beside ours, each measured against the other under the same load:
    ``task.enqueue()`` against ``submit_job``, and ``@task`` no-ops against ``@job`` no-ops."""
    measured = []
    for _ in range(rounds):
        submit, enqueue = benchmark.enqueue_side_by_side(2000)
        benchmark.clear()
        measured.append({"submit_job": submit, "enqueue": enqueue, "ratio": enqueue / submit})
    drained = [
        {"job_noops": rate["job"], "task_noops": rate["task"], "ratio": rate["task"] / rate["job"]}
        for rate in benchmark.noops_side_by_side(max(jobs // 2, 100), 2 * rounds, workers)
    ]
    return {
        "enqueue_rounds": measured,
        "enqueue_ratio": median_ratio(measured),
        "throughput_rounds": drained,
        "throughput_ratio": median_ratio(drained),
    }


def ratio_line(
    what: str, rounds: list[dict[str, float]], ours: str, ceiling: str, target: float
) -> str:
    middle = sorted(rounds, key=lambda r: r[ours] / r[ceiling])[len(rounds) // 2]
    return f"  {what:30} {middle[ceiling]:9.0f} jobs/s -> " + ratio_text(
        rounds, ours, ceiling, target
    )


def ratio_text(rounds: list[dict[str, float]], ours: str, ceiling: str, target: float) -> str:
    """The median ratio of ``ours`` to ``ceiling`` over ``rounds``, each round's, the target."""
    ratios = sorted(r[ours] / r[ceiling] for r in rounds)
    return (
        f"ours is {ratios[len(ratios) // 2]:.0%} (rounds: "
        + ", ".join(f"{r[ours] / r[ceiling]:.0%}" for r in rounds)
        + f"; target: at least {target:.0%})"
    )


def median_ratio(rounds: list[dict[str, float]]) -> float:
    return sorted(r["ratio"] for r in rounds)[len(rounds) // 2]


def report(results: dict[str, Any]) -> str:
    lines = [f"database: {results['database']}, workers: {results['workers']}"]
    if "throughput_rounds" in results:
        rounds = results["throughput_rounds"]
        lines += [
            f"throughput       {results['throughput_jobs_per_s']:9.0f} jobs/s  "
            f"({results['jobs']} no-op jobs; median of {len(rounds)} rounds)",
            ratio_line("of the same-table ceiling", rounds, "jobs_per_s", "ceiling", 0.90),
            ratio_line("of the minimal-table ceiling", rounds, "jobs_per_s", "minimal", 0.70),
            "CPU per job      parent {:.0f} µs, worker {:.0f} µs (median of {})".format(
                statistics.median(r["parent_cpu_us"] for r in rounds),
                statistics.median(r["worker_cpu_us"] for r in rounds),
                ", ".join(f"{r['parent_cpu_us']:.0f}/{r['worker_cpu_us']:.0f}" for r in rounds),
            ),
        ]
    if "latency_ms" in results:
        latency = results["latency_ms"]
        lines.append(
            "latency          p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms".format(
                **latency
            )
            + " (target on PostgreSQL: p50 at most 2.5 ms, p99 at most 5 ms)"
        )
    if "latency_floor_ms" in results:
        lines.append(
            "  raw SQL floor  p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms".format(
                **results["latency_floor_ms"]
            )
            + " (INSERT with NOTIFY; a LISTENing process claims with one UPDATE)"
        )
    if "enqueue_jobs_per_s" in results:
        rates = results["enqueue_jobs_per_s"]
        floor = rates["floor"]
        lines += [
            f"enqueue floor    {floor:9.0f} jobs/s  (plain INSERT + COMMIT, alternating with:)",
            f"submit_job       {rates['replace']:9.0f} jobs/s  default (replace): "
            f"{rates['replace'] / floor:.0%} of the floor (target: at least 50%)",
            f"  with allow     {rates['allow']:9.0f} jobs/s  {rates['allow'] / floor:.0%} of the "
            "floor (target: at least 65%)",
        ]
        if "unprepared" in rates:
            lines.append(
                f"  unprepared     {rates['unprepared']:9.0f} jobs/s  replace with "
                f"PREPARED_STATEMENTS off: {rates['unprepared'] / floor:.0%} of the floor"
            )
    if "bulk_rounds" in results:
        bulk = results["bulk_rounds"]
        middle = sorted(bulk, key=lambda r: r["ratio"])[len(bulk) // 2]
        lines.append(
            f"submit_jobs      {middle['ours']:9.0f} jobs/s  (20,000 rows) against a raw "
            f"multi-row INSERT's {middle['floor']:.0f}: " + ratio_text(bulk, "ours", "floor", 0.50)
        )
    if "tasks" in results:
        tasks = results["tasks"]
        lines += [
            f"task.enqueue()   {tasks['enqueue_ratio']:9.0%} of submit_job's rate, median of "
            + ", ".join(
                f"{r['enqueue']:.0f} vs {r['submit_job']:.0f}/s" for r in tasks["enqueue_rounds"]
            )
            + " (target: at least 80%)",
            f"@task no-ops     {tasks['throughput_ratio']:9.0%} of @job no-ops' rate, median of "
            + ", ".join(
                f"{r['task_noops']:.0f} vs {r['job_noops']:.0f}/s"
                for r in tasks["throughput_rounds"]
            )
            + " (target: at least 90%)",
        ]
    if "scaled_jobs_per_s" in results:
        scaled = results["scaled_jobs_per_s"]
        ratio = scaled / results["throughput_jobs_per_s"]
        lines.append(
            f"scale            {scaled:9.0f} jobs/s with {results['scale_rows']} finished rows"
            f" -> ratio {ratio:.2f}"
        )
    if "memory" in results:
        memory = results["memory"]
        lines.append(
            f"memory           parent peak {memory['peak_parent_mb']:.0f} MB, "
            f"child peak {memory['peak_child_mb']:.0f} MB"
        )
        for count, rss in memory["child_mb_at"].items():
            lines.append(
                f"                 children after {count} jobs: {[round(r) for r in rss]} MB"
            )
    if "idle" in results:
        lines += idle_report(results["idle"])
    return "\n".join(lines)


def idle_report(idle: dict[str, Any]) -> list[str]:
    server = idle["server_statements_per_s"]
    counted_by_server = (
        ""
        if server is None
        else f", {server:.1f}/s counted by the server (less {idle['server_baseline_per_s']:.1f}/s"
        " of other clients)"
    )
    return [
        f"idle             {idle['workers']} workers: {idle['cpu_percent']:.2f}% of one core "
        f"(whole process tree), {idle['statements_per_s']:.1f} statements/s counted by the "
        f"processes{counted_by_server}",
        f"idle wake-up     p50 {idle['latency_p50_ms']:.1f} ms, p99 {idle['latency_p99_ms']:.1f} ms"
        " (submit to start, pool idle)",
    ]
