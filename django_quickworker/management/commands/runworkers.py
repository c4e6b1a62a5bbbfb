"""``manage.py runworkers``: start the supervisor and its worker processes."""

import argparse
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, router
from django.db.migrations.executor import MigrationExecutor
from django.utils.module_loading import module_has_submodule

from django_quickworker import __version__
from django_quickworker.conf import conf, parse_log_level, parse_worker_count
from django_quickworker.finish import DATABASE_UNAVAILABLE
from django_quickworker.models import WorkerJob
from django_quickworker.options import validate_queue
from django_quickworker.registry import registry
from django_quickworker.supervisor import Supervisor
from django_quickworker.tasks import discover_tasks
from django_quickworker.worker import configure_logging


def worker_count(value: str) -> int:
    try:
        count = parse_worker_count(value)
    except ImproperlyConfigured:
        count = 0
    if count < 1:  # WORKER_COUNT=0 means "no workers here"; asking for none makes no sense
        raise argparse.ArgumentTypeError(
            f"--workers={value!r} is invalid; use 'cpus' or a positive integer."
        )
    return count


def queue_list(value: str) -> list[str]:
    queues = [queue.strip() for queue in value.split(",")]
    try:
        return [validate_queue(queue) for queue in queues]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--queues={value!r}: {error}") from None


def seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (0 or more).")
    return number


def address(
    value: str, option: str = "--serve", example: str = "127.0.0.1:8000"
) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"{option}={value!r} is not an address; use HOST:PORT or PORT (e.g. {example})."
        )
    return host or "127.0.0.1", int(port)


def metrics_address(value: str) -> tuple[str, int]:
    return address(value, "--metrics", "0.0.0.0:9100")


def log_level(value: str) -> str:
    try:
        return parse_log_level(value)
    except ImproperlyConfigured as error:
        message = str(error).replace("WORKER_LOG_LEVEL", "--log-level")
        raise argparse.ArgumentTypeError(message) from None


APP_LABEL = WorkerJob._meta.app_label


def check_schema(alias: str) -> None:
    """Refuse to start on a database that lacks django-quickworker's migrations.

    Otherwise every query fails with "no such table" (an OperationalError, as an outage
    raises) and runworkers would retry forever as if the database were down.
    """
    try:
        executor = MigrationExecutor(connections[alias])
        targets = [node for node in executor.loader.graph.leaf_nodes() if node[0] == APP_LABEL]
        missing = [migration for migration, _ in executor.migration_plan(targets)]
    except DATABASE_UNAVAILABLE:
        return  # an outage, not a schema: the supervisor waits for the database
    if missing:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration in missing)
        raise CommandError(
            f"The database {connections[alias].settings_dict['NAME']!r} lacks migrations that "
            f"runworkers needs ({names}). Run `manage.py migrate` first."
        )


APP_LABEL = WorkerJob._meta.app_label


class Command(BaseCommand):
    help = "Run background job workers: a supervising parent and its worker processes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--workers",
            type=worker_count,
            help="Worker processes: 'cpus' or a number (default: WORKER_COUNT, else 1).",
        )
        parser.add_argument(
            "--queues",
            type=queue_list,
            help="Comma-separated queues to serve (default: all).",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit once no due job is left (default: %(default)r).",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=seconds,
            help="Seconds running jobs get to finish after SIGTERM "
            "(default: QUICKWORKER['SHUTDOWN_TIMEOUT'], else 30).",
        )
        parser.add_argument(
            "--serve",
            type=address,
            nargs="?",
            const=("127.0.0.1", 8000),
            metavar="[HOST:]PORT",
            help="Embedded mode: also serve the project's ASGI application, by default on "
            "127.0.0.1:8000 (loopback only). Needs uvicorn: django-quickworker[embedded].",
        )
        parser.add_argument(
            "--metrics",
            type=metrics_address,
            metavar="[HOST:]PORT",
            help="Serve /metrics (Prometheus) and /healthz on this address, e.g. 0.0.0.0:9100 "
            "(default: off). Needs prometheus_client: django-quickworker[metrics].",
        )
        parser.add_argument(
            "--log-level",
            type=log_level,
            help="debug, info, warning or error (default: WORKER_LOG_LEVEL, else info).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            workers = options["workers"] or conf.worker_count
            level = options["log_level"] or self.level_from_verbosity(options["verbosity"])
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        if not workers and not options["serve"]:
            self.stdout.write("WORKER_COUNT is 0: no workers to run here. Exiting.")
            return
        check_schema(router.db_for_write(WorkerJob))
        configure_logging(level)
        discover_tasks()  # before the banner lists the job types and cron declares them
        web_server = self.web_server(options["serve"], level)
        if options["metrics"]:
            require_prometheus_client()
        self.stdout.write(self.banner(workers, options["queues"], options["serve"]))
        supervisor = Supervisor(
            workers=workers,
            queues=options["queues"],
            burst=options["burst"],
            shutdown_timeout=options["shutdown_timeout"],
            log_level=level,
            web_server=web_server,
            monitor_address=options["metrics"],
        )
        code = supervisor.run()
        if code:
            raise SystemExit(code)

    def level_from_verbosity(self, verbosity: int) -> str:
        if verbosity == 0:
            return "warning"
        if verbosity >= 2:
            return "debug"
        return conf.worker_log_level

    def web_server(self, address: tuple[str, int] | None, level: str) -> Any:
        if address is None:
            return None
        try:
            from django_quickworker.embedded import embedded_server
        except ImportError as error:
            raise CommandError(
                f"--serve needs uvicorn and websockets ({error}); "
                "install django-quickworker[embedded]."
            ) from None
        try:
            return embedded_server(*address, log_level=level)
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None

    def banner(
        self, workers: int, queues: list[str] | None, address: tuple[str, int] | None
    ) -> str:
        connection = connections[router.db_for_write(WorkerJob)]
        types = ", ".join(job_type.name for job_type in registry) or "none"
        if not apps_with_jobs_modules():
            types += " (no installed app has a jobs.py: put your @job functions in one)"
        return (
            f"django-quickworker {__version__}\n"
            f"  database:      {connection.vendor} {connection.settings_dict['NAME']}\n"
            f"  workers:       {workers}\n"
            f"  queues:        {', '.join(queues) if queues else 'all'}\n"
            f"  job types:     {types}\n"
            f"  channel layer: {channel_layer_in_use(serving=address is not None)}"
            + (f"\n  serving:       {served(address)}" if address else "")
        )


def apps_with_jobs_modules() -> list[str]:
    """The installed apps, other than this one, that have a ``jobs`` module to discover."""
    return [
        config.name
        for config in apps.get_app_configs()
        if config.name != "django_quickworker" and module_has_submodule(config.module, "jobs")
    ]


def channel_layer_in_use(serving: bool) -> str:
    """The layer the relay sends to, named by its class, and who can hear it."""
    layer = get_channel_layer()
    if layer is None:
        return "none (CHANNEL_LAYERS is not set: live messages are dropped)"
    name = f"{type(layer).__module__}.{type(layer).__qualname__}"
    if isinstance(layer, InMemoryChannelLayer) and not serving:
        return f"{name} (this process only: browsers connected elsewhere get no messages)"
    return name


def served(address: tuple[str, int]) -> str:
    from django_quickworker.embedded import serves_static_files  # needs the embedded extra

    static = ", with static files" if serves_static_files() else ""
    return f"http://{address[0]}:{address[1]}/ ({settings.ASGI_APPLICATION}{static})"


def require_prometheus_client() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError as error:
        raise CommandError(
            f"--metrics needs prometheus_client ({error}); install django-quickworker[metrics]."
        ) from None
