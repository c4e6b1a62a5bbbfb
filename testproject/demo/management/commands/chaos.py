"""``manage.py chaos``: run a job mix through runworkers on a throwaway PostgreSQL (or
MariaDB) server while killing workers, the parent and the server (and with ``--hosts``, whole
hosts, a partition and a skewed clock); report what was lost or run twice."""

import dataclasses
import json
from argparse import ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.chaos import DATABASE, Chaos, Report
from demo.dbserver import DatabaseServer, MissingServer, throwaway
from demo.hosts import MissingFaketime
from demo.mariadbserver import MariaDBServer
from demo.pgcluster import PostgreSQLServer

SERVERS: dict[str, type[DatabaseServer]] = {
    "postgresql": PostgreSQLServer,
    "mariadb": MariaDBServer,
}


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ArgumentTypeError(f"{value!r} is not a whole number of at least 1.")
    return int(value)


class Command(BaseCommand):
    help = "Kill workers, the parent and the server under load; count lost and repeated jobs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--jobs", type=int, default=3000, help="(default: %(default)r)")
        parser.add_argument("--workers", type=int, default=4, help="(default: %(default)r)")
        parser.add_argument(
            "--child-kill-every",
            type=float,
            default=3.0,
            help="Seconds between SIGKILLs of a random worker (default: %(default)r).",
        )
        parser.add_argument(
            "--hosts",
            type=positive,
            default=1,
            help="Runworkers trees, each a host of its own with its own proxy to the server; "
            "with more than one, a whole host is also killed, one cut off for longer than the "
            "lease, and the last one's clock is 5 minutes fast (default: %(default)r).",
        )
        parser.add_argument(
            "--server", choices=sorted(SERVERS), default="postgresql", help="(default: %(default)s)"
        )
        parser.add_argument("--json", dest="json_path", help="Also write the report here.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with throwaway(SERVERS[options["server"]], DATABASE) as cluster:
                report = Chaos(
                    cluster,
                    options["jobs"],
                    options["workers"],
                    options["child_kill_every"],
                    options["hosts"],
                ).run()
        except (MissingServer, MissingFaketime) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(render(report))
        if options["json_path"]:
            with open(options["json_path"], "w") as output:
                json.dump(dataclasses.asdict(report), output, indent=2)
        if report.lost or report.run_more_than_once > report.in_flight_at_faults:
            raise CommandError("Jobs were lost or run more often than the faults explain.")


def render(report: Report) -> str:
    lines = [
        f"hosts                      {report.hosts}"
        + (f" (the last one's clock {report.clock_skew_s} s fast)" if report.clock_skew_s else ""),
        f"jobs submitted             {report.submitted}",
        f"jobs succeeded             {report.succeeded}",
        f"jobs lost                  {report.lost}",
        f"jobs run more than once    {report.run_more_than_once} "
        f"(jobs in flight on what was killed or cut off: {report.in_flight_at_faults})",
        f"longest orphaned job       {report.longest_orphaned_s:.1f} s"
        " (started, with no live worker)",
    ]
    for fault in report.faults:
        details = ", ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in fault.items()
            if k != "fault"
        )
        lines.append(f"  {fault['fault']:<34} {details}")
    return "\n".join(lines)
