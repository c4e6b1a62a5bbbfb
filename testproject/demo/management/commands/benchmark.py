"""``manage.py benchmark``: throughput, latency, enqueue rate, scale and memory of the queue,
beside the raw SQL ceiling measured in the same run on the same database."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

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
                    ceiling = benchmark.ceiling(jobs, workers)
                    benchmark.clear()
                    ours = benchmark.throughput(jobs, workers)
                    benchmark.clear()
                    rounds.append({"ceiling": ceiling, "ours": ours, "ratio": ours / ceiling})
                results["throughput_rounds"] = rounds
                middle = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
                results["ceiling_jobs_per_s"] = middle["ceiling"]
                results["throughput_jobs_per_s"] = middle["ours"]
            if "latency" in sections:
                results["latency_ms"] = benchmark.latency(200, 0.02, workers)
                benchmark.clear()
            if "enqueue" in sections:
                results["enqueue_ceiling_jobs_per_s"] = benchmark.enqueue_ceiling(2000)
                benchmark.clear()
                results["enqueue_single_jobs_per_s"] = benchmark.enqueue_single(2000, "allow")
                results["enqueue_replace_jobs_per_s"] = benchmark.enqueue_single(2000, "replace")
                results["enqueue_bulk_jobs_per_s"] = benchmark.enqueue_bulk(20_000)
                benchmark.clear()
            if "tasks" in sections:
                results["tasks"] = tasks_against_jobs(jobs, workers, options["rounds"])
            if "scale" in sections:
                benchmark.add_finished_rows(options["scale_rows"])
                results["scale_rows"] = options["scale_rows"]
                results["scaled_jobs_per_s"] = benchmark.throughput(jobs, workers, "scaled")
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
        self.stdout.write(report(results))
        if options["json_path"]:
            with open(options["json_path"], "w") as output:
                json.dump(results, output, indent=2)


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


def median_ratio(rounds: list[dict[str, float]]) -> float:
    return sorted(r["ratio"] for r in rounds)[len(rounds) // 2]


def report(results: dict[str, Any]) -> str:
    lines = [f"database: {results['database']}, workers: {results['workers']}"]
    ceiling = results.get("ceiling_jobs_per_s")
    if ceiling:
        ours = results["throughput_jobs_per_s"]
        lines += [
            f"throughput       {ours:9.0f} jobs/s  ({results['jobs']} no-op jobs)",
            f"raw SQL ceiling  {ceiling:9.0f} jobs/s  -> ours is {100 * ours / ceiling:.0f}%"
            " (median of the rounds: "
            + ", ".join(f"{100 * r['ratio']:.0f}%" for r in results["throughput_rounds"])
            + ")",
        ]
    if "latency_ms" in results:
        latency = results["latency_ms"]
        lines.append(
            "latency          p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms".format(
                **latency
            )
        )
    if "enqueue_single_jobs_per_s" in results:
        lines += [
            f"enqueue single   {results['enqueue_single_jobs_per_s']:9.0f} jobs/s"
            f"  (plain INSERT + COMMIT: {results['enqueue_ceiling_jobs_per_s']:.0f} jobs/s)",
            f"  with replace   {results['enqueue_replace_jobs_per_s']:9.0f} jobs/s"
            "  (the default on_duplicate_tag: tag lock and look for duplicates too)",
            f"enqueue bulk     {results['enqueue_bulk_jobs_per_s']:9.0f} jobs/s",
        ]
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
