"""Everything that differs between databases: one module per database behind one base class.

The rest of the app asks :func:`database` for the object of a connection and never looks at
the vendor itself. Adding a database means one module here (and one tox factor).
"""

import functools
import importlib
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured
from django.db import connections

if TYPE_CHECKING:
    from django_quickworker.databases.base import Database

# Django's vendor name -> the module (and class) that speaks to that database.
MODULES = {
    "postgresql": ("django_quickworker.databases.postgresql", "PostgreSQL"),
    "sqlite": ("django_quickworker.databases.sqlite", "SQLite"),
    "mysql": ("django_quickworker.databases.mysql", "MySQL"),
}


class UnsupportedDatabase(ImproperlyConfigured):
    """The jobs' database is one that django-quickworker cannot run on."""


@functools.cache
def database(alias: str) -> "Database":
    """The object for the connection ``alias``, chosen by its vendor (one per alias)."""
    vendor = connections[alias].vendor
    if vendor not in MODULES:
        raise UnsupportedDatabase(
            f"The database {alias!r} is {vendor!r}, which django-quickworker does not support; "
            f"use one of {sorted(MODULES)!r}."
        )
    module, name = MODULES[vendor]
    # Imported on first use: each module may need its database's driver.
    cls: type[Database] = getattr(importlib.import_module(module), name)
    return cls(alias)
