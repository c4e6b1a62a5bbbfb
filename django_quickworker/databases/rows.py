"""A job's row in raw SQL, on one connection: its columns, its values as statement
parameters, and a fetched row back as the WorkerJob the ORM would give, without the ORM's
per-row cost (the claim and the finish are the hot path)."""

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, CharField, Field, IntegerField, TextField
from django.db.models.expressions import RawSQL

from django_quickworker.models import WorkerJob
from django_quickworker.states import Changes


class JobRows:
    """Reads and writes of ``WorkerJob`` rows in raw SQL, on the connection ``alias``."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    @property
    def table(self) -> str:
        return self.connection.ops.quote_name(WorkerJob._meta.db_table)

    # Writing: a change (states.py) as SQL

    def assignments(self, changes: Changes) -> tuple[str, list[object]]:
        """The SET clause (and parameters) writing ``changes``, whose values are plain or RawSQL."""
        connection = self.connection
        quoted = _quoted_columns(self.alias)
        clauses, params = [], []
        for name, value in changes.items():
            if isinstance(value, RawSQL):
                clauses.append(f"{quoted[name]} = {value.sql}")
                params += value.params
            else:
                clauses.append(f"{quoted[name]} = %s")
                params.append(_prepare(name, value, connection))
        return ", ".join(clauses), params

    def equal_to(self, values: dict[str, Any]) -> tuple[str, list[object]]:
        """SQL saying that each column of ``values`` holds its value (and parameters)."""
        connection = self.connection
        quoted = _quoted_columns(self.alias)
        sql = " AND ".join(f"{quoted[name]} = %s" for name in values)
        return sql, [_prepare(name, value, connection) for name, value in values.items()]

    # Reading

    def fetch_rows(self, sql: str, params: Sequence[object]) -> list[dict[str, Any]]:
        """Run ``sql``; return its rows as {column: value}, values as the database gave them."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]

    def fetch_one(self, sql: str, params: Sequence[object]) -> tuple[Any, ...] | None:
        """Run ``sql``; return its first row, values as the database gave them, or None."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            row: tuple[Any, ...] | None = cursor.fetchone()
            return row

    def job_columns(self, table: str = "") -> str:
        """The columns of a job's row, in the order ``row_to_job`` reads them; of ``table``'s
        (a name in the query), when given."""
        return _job_columns(self.alias, f"{table}." if table else "")

    def row_to_job(self, values: Sequence[Any]) -> WorkerJob:
        """The WorkerJob of a row of ``job_columns``, its values converted as the ORM would
        (without the per-row field lookups the ORM makes: this is the claim's hot path)."""
        connection = self.connection
        converters = _converters(self.alias, settings.USE_TZ)
        converted = [
            _convert(value, *entry, connection)
            for entry, value in zip(converters.values(), values, strict=True)
        ]
        return WorkerJob.from_db(self.alias, list(converters), converted)

    def convert(self, attname: str, value: Any) -> Any:
        """A column's raw value, as the ORM would give it for the field ``attname``."""
        field, converters = _converters(self.alias, settings.USE_TZ)[attname]
        return _convert(value, field, converters, self.connection)

    def db_time(self, moment: datetime | None) -> object:
        """``moment`` in the form the database stores datetimes, for raw SQL parameters."""
        return self.connection.ops.adapt_datetimefield_value(moment)


@functools.cache
def _converters(alias: str, use_tz: bool) -> "dict[str, tuple[Field[Any, Any], list[Any]]]":
    # Worked out once: the ORM would redo this for every claimed row, on the hot path. Per
    # USE_TZ too: MySQL's backend adds its datetime converter only when USE_TZ is on.
    connection = connections[alias]
    return {
        field.attname: (
            field,
            connection.ops.get_db_converters(field.cached_col)
            + field.get_db_converters(connection),
        )
        for field in WorkerJob._meta.concrete_fields
    }


def _convert(
    value: Any, field: "Field[Any, Any]", converters: list[Any], connection: BaseDatabaseWrapper
) -> Any:
    for converter in converters:
        value = converter(value, field.cached_col, connection)
    return value


@functools.cache
def _job_columns(alias: str, prefix: str) -> str:
    return ", ".join(f"{prefix}{quoted}" for quoted in _quoted_columns(alias).values())


@functools.cache
def _quoted_columns(alias: str) -> dict[str, str]:
    """Each column of a job's row (by field attname), quoted for ``alias``'s SQL."""
    quote = connections[alias].ops.quote_name
    return {field.attname: quote(str(field.column)) for field in WorkerJob._meta.concrete_fields}


def _prepare(name: str, value: Any, connection: BaseDatabaseWrapper) -> object:
    """``value`` of column ``name`` as a raw SQL parameter, as the ORM would send it."""
    if name in _plain_columns():  # what get_db_prep_save would give back unchanged
        return value
    if isinstance(value, datetime):  # what get_db_prep_save ends with, for a datetime
        return connection.ops.adapt_datetimefield_value(value)
    return _fields()[name].get_db_prep_save(value, connection)


@functools.cache
def _fields() -> "dict[str, Field[Any, Any]]":
    return {field.attname: field for field in WorkerJob._meta.concrete_fields}


@functools.cache
def _plain_columns() -> frozenset[str]:
    """The columns whose values every driver takes as Python gives them: text, integers
    and booleans (not dates, durations or JSON, which the backend adapts)."""
    plain = (CharField, TextField, IntegerField, BooleanField)  # AutoFields are IntegerFields
    return frozenset(
        field.attname
        for field in WorkerJob._meta.concrete_fields
        if isinstance(field, plain) and not field.is_relation
    )
