"""``manage.py chaos``: run a job mix through runworkers on a throwaway PostgreSQL (or
MariaDB) server while killing workers, the parent and the server; report what was lost or
run twice."""

import dataclasses
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.chaos import DATABASE, Chaos, Report
from demo.mariadbserver import MariaDBServer, throwaway_mariadb
from demo.pgcluster import Cluster, MissingServer, throwaway_cluster

Throwaway = Callable[[str], AbstractContextManager[Cluster | MariaDBServer]]
SERVERS: dict[str, Throwaway] = {"postgresql": throwaway_cluster, "mariadb": throwaway_mariadb}


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
            "--server", choices=sorted(SERVERS), default="postgresql", help="(default: %(default)s)"
        )
        parser.add_argument("--json", dest="json_path", help="Also write the report here.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with SERVERS[options["server"]](DATABASE) as cluster:
                report = Chaos(
                    cluster, options["jobs"], options["workers"], options["child_kill_every"]
                ).run()
        except MissingServer as error:
            raise CommandError(str(error)) from None
        self.stdout.write(render(report))
        if options["json_path"]:
            with open(options["json_path"], "w") as output:
                json.dump(dataclasses.asdict(report), output, indent=2)
        if report.lost or report.run_more_than_once > report.running_when_killed:
            raise CommandError("Jobs were lost or run more often than the faults explain.")


def render(report: Report) -> str:
    lines = [
        f"jobs submitted             {report.submitted}",
        f"jobs succeeded             {report.succeeded}",
        f"jobs lost                  {report.lost}",
        f"jobs run more than once    {report.run_more_than_once} "
        f"(jobs running at the faults: {report.running_when_killed})",
        f"longest orphaned job       {report.longest_orphaned_s:.1f} s"
        " (started, with no live worker)",
    ]
    for fault in report.faults:
        details = ", ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in fault.items()
            if k != "fault"
        )
        lines.append(f"  {fault['fault']:<30} {details}")
    return "\n".join(lines)
