"""``manage.py quickworker status``: the queue's health, for people and for monitoring.

Exit status: 0 healthy; 1 unhealthy (no live runworkers, jobs with expired leases, or a
due job waiting longer than --max-latency); 2 when the queue cannot be read at all.
"""

import argparse
import json
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError

from django_quickworker.overview import MAX_LATENCY, summarize

UNHEALTHY = 1
UNREADABLE = 2


def positive_seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above 0.")
    return number


class Command(BaseCommand):
    help = "Operate the job queue. 'status' prints its health; exit status 1 when unhealthy."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        status = subcommands.add_parser(
            "status",
            help="Show job counts, queue latency, recent failures and live runworkers.",
            description=(
                "Show the queue's health. Exit status: 0 healthy; 1 when no runworkers is "
                "alive, a running job's lease expired unrescued, or a due job waited longer "
                "than --max-latency; 2 when the database cannot be read."
            ),
        )
        status.add_argument(
            "--json", action="store_true", help="Print JSON, for scripts (default: %(default)r)."
        )
        status.add_argument(
            "--max-latency",
            type=positive_seconds,
            default=MAX_LATENCY.total_seconds(),
            metavar="SECONDS",
            help="Longest a due job may wait before the queue counts as stuck "
            "(default: %(default)r).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            summary = summarize(max_latency=timedelta(seconds=options["max_latency"]))
        except DatabaseError as error:
            problem = f"Cannot read the queue: {error}".strip()
            if options["json"]:
                self.stdout.write(json.dumps({"healthy": False, "problems": [problem]}, indent=2))
            else:
                self.stderr.write(problem)
            raise SystemExit(UNREADABLE) from None
        if options["json"]:
            self.stdout.write(json.dumps(summary.as_dict(), indent=2))
        else:
            self.stdout.write(summary.as_text())
        if not summary.is_healthy:
            raise SystemExit(UNHEALTHY)
