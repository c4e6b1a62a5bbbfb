"""Shared fixtures, and the database the run is on.

Tests marked ``postgresql`` or ``sqlite`` exercise one database's own mechanism (advisory
locks, NOTIFY, SQLite's write lock); they run in the tox envs for that database and are
deselected, with a line saying so, in the others.
"""

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connection

from django_quickworker.registry import JobRegistry, registry

VENDOR_MARKERS = {"postgresql", "sqlite"}


def pytest_configure(config: pytest.Config) -> None:
    for vendor in sorted(VENDOR_MARKERS):
        config.addinivalue_line("markers", f"{vendor}: runs only when the database is {vendor}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    vendor = connection.vendor
    other = [item for item in items if _vendor_of(item) not in (None, vendor)]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if item not in other]
        print(f"\n{len(other)} tests for other databases deselected (this run is on {vendor}).")


def _vendor_of(item: pytest.Item) -> str | None:
    marks = VENDOR_MARKERS.intersection(mark.name for mark in item.iter_markers())
    return marks.pop() if marks else None


@pytest.fixture(scope="session", autouse=True)
def database_reachable(django_db_blocker: pytest.FixtureRequest) -> None:
    """Fail the run at once, saying how to fix it, when the database server is down."""
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        try:
            connection.ensure_connection()
        except Exception as error:
            url = settings.DATABASES["default"]
            pytest.exit(
                f"Cannot connect to the {connection.vendor} database "
                f"{url.get('HOST') or ''}:{url.get('PORT') or ''} ({error}). Start it "
                "(PostgreSQL: pg_ctlcluster --skip-systemctl-redirect 15 main start) or point "
                "DATABASE_URL at a running server.",
                returncode=3,
            )


@pytest.fixture
def job_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[JobRegistry]:
    """The job registry, restored after the test so test-only job types do not leak."""
    monkeypatch.setattr(registry, "_types", dict(registry._types))
    yield registry
