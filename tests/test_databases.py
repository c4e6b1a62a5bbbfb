"""The database seam: one object per connection, chosen by its vendor; the rest refuses."""

import subprocess
import sys
import textwrap

from django.db import connection

from django_quickworker.databases import MODULES, database

UNSUPPORTED_PROJECT = textwrap.dedent(
    """
    import django
    from django.conf import settings
    from django.core.management import call_command

    # No DATABASES: Django's dummy backend, whose vendor ("unknown") the app cannot run on.
    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "channels",
                        "django_quickworker"],
    )
    django.setup()
    call_command("check")
    """
)


def test_each_connection_gets_the_module_of_its_vendor() -> None:
    db = database("default")

    assert db.vendor == connection.vendor
    assert type(db).__module__ == MODULES[connection.vendor][0]
    assert database("default") is db  # one object per connection


def test_manage_py_check_refuses_an_unsupported_database() -> None:
    result = subprocess.run(
        [sys.executable, "-c", UNSUPPORTED_PROJECT], capture_output=True, text=True, timeout=60
    )

    assert result.returncode != 0
    assert "quickworker.E005" in result.stderr
    assert "'unknown'" in result.stderr  # the vendor, named
    assert "'mysql', 'postgresql', 'sqlite'" in result.stderr  # and what is supported
