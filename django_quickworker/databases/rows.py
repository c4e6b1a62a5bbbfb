"""A job's row in raw SQL, on one connection: its columns, its values as statement
parameters, and a fetched row back as the WorkerJob the ORM would give, without the ORM's
per-row cost (the claim and the finish are the hot path)."""

import functools
import operator
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, CharField, Field, IntegerField, TextField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from django_quickworker.models import WorkerJob
from django_quickworker.states import Changes

# Rows one INSERT writes at most, when the database's limit on parameters allows more: it
# keeps a statement well under MySQL's max_allowed_packet unless the jobs' data is large.
ROWS_PER_INSERT = 1000


class JobRows:
    """Reads and writes of ``WorkerJob`` rows in raw SQL, on the connection ``alias``."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    @property
    def table(self) -> str:
        return _table(self.alias)

    # Writing: a change (states.py) as SQL

    def assignments(self, changes: Changes) -> tuple[str, list[object]]:
        """The SET clause (and parameters) writing ``changes``, whose values are plain or RawSQL."""
        connection = self.connection
        quoted = quoted_columns(self.alias)
        clauses, params = [], []
        for name, value in changes.items():
            if isinstance(value, RawSQL):
                clauses.append(f"{quoted[name]} = {value.sql}")
                params += value.params
            else:
                clauses.append(f"{quoted[name]} = %s")
                params.append(_prepare(name, value, connection))
        return ", ".join(clauses), params

    def parameter(self, name: str, value: Any) -> object:
        """``value`` of column ``name`` as a raw SQL parameter, as the ORM would send it."""
        return _prepare(name, value, self.connection)

    def equal_to(self, values: dict[str, Any]) -> tuple[str, list[object]]:
        """SQL saying that each column of ``values`` holds its value (and parameters)."""
        connection = self.connection
        quoted = quoted_columns(self.alias)
        sql = " AND ".join(f"{quoted[name]} = %s" for name in values)
        return sql, [_prepare(name, value, connection) for name, value in values.items()]

    # Writing new rows

    def insert_rows(self, jobs: list[WorkerJob]) -> None:
        """Write ``jobs`` with one INSERT (or as few as the database's limits allow)."""
        if not jobs:
            return
        if not self.connection.features.can_return_rows_from_bulk_insert:
            # MySQL has no INSERT … RETURNING: the ORM's ways of learning the new ids.
            if len(jobs) == 1:
                jobs[0].save(using=self.alias, force_insert=True)
            else:
                WorkerJob.objects.using(self.alias).bulk_create(jobs)
            return
        statements = self.insert_statements(jobs)
        ids: list[Any] = []
        # Several INSERTs are still one write: the caller's transaction, or one of our own.
        one = len(statements) == 1
        atomic = nullcontext() if one else transaction.atomic(using=self.alias, savepoint=False)
        with atomic, self.connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
                ids += [pk for (pk,) in cursor.fetchall()]
        self.saved(jobs, ids)

    def insert_statements(self, jobs: list[WorkerJob]) -> list[tuple[str, list[object]]]:
        """The INSERTs (each ``… RETURNING id``) that write ``jobs``."""
        return self.values_statements(self.prepared_columns(jobs))

    def values_statements(self, columns: list[list[object]]) -> list[tuple[str, list[object]]]:
        """The ``INSERT … VALUES … RETURNING id`` statements of the rows whose prepared
        ``columns`` are given, as many rows to one as the database's limit on parameters
        allows, up to ROWS_PER_INSERT.

        Their ids come back in the order of the rows, as Django's ``bulk_create`` relies on.
        """
        # NULL written into the SQL: for one row, half the columns, parameters not sent.
        if len(columns[0]) == 1:  # every submit_job: one row, no batches to work out
            values = [value for (value,) in columns]
            null = tuple(value is None for value in values)
            sent_values = [value for value in values if value is not None]
            return [(_values_sql(self.alias, null, 1), sent_values)]
        null = tuple(is_null(column) for column in columns)
        sent = [n for n, none in enumerate(null) if not none]
        rows = list(zip(*(columns[n] for n in sent), strict=True))
        fields = [inserted_fields()[n] for n in sent]
        size = max(1, min(ROWS_PER_INSERT, self.connection.ops.bulk_batch_size(fields, rows)))
        return [
            (
                _values_sql(self.alias, null, len(rows[start : start + size])),
                [value for values in rows[start : start + size] for value in values],
            )
            for start in range(0, len(rows), size)
        ]

    def prepared_columns(self, jobs: list[WorkerJob]) -> list[list[object]]:
        """The values of each inserted field in ``jobs``, as ``save`` would send them.

        As ``save`` does, created_at and updated_at are stamped first: here with one moment
        for every row, since they are written together.
        """
        now = timezone.now()
        for field in _stamped_fields():
            for job in jobs:
                setattr(job, field.attname, now)
        connection = self.connection
        if len(jobs) == 1:  # the usual submission: no column to look through
            values, plain = vars(jobs[0]), _plain_columns()
            # Half the columns of a new job are NULL, which every field sends as it is.
            return [
                [value if value is None or name in plain else _prepare(name, value, connection)]
                for name, value in ((name, values[name]) for name in _inserted_attnames())
            ]
        return [
            prepared(field, list(map(operator.attrgetter(field.attname), jobs)), connection)
            for field in inserted_fields()
        ]

    def saved(self, jobs: list[WorkerJob], ids: Sequence[Any]) -> None:
        """Mark ``jobs`` as the saved rows ``ids`` (in order), as ``save`` would."""
        for job, pk in zip(jobs, ids, strict=True):
            job.pk = pk
            job._state.adding = False
            job._state.db = self.alias

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
        converted = list(values)
        for position, field, converters in _converted_columns(self.alias, settings.USE_TZ):
            converted[position] = _convert(converted[position], field, converters, connection)
        return WorkerJob.from_db(self.alias, _attnames(), converted)

    def convert(self, attname: str, value: Any) -> Any:
        """A column's raw value, as the ORM would give it for the field ``attname``."""
        field, converters = _converters(self.alias, settings.USE_TZ)[attname]
        return _convert(value, field, converters, self.connection)


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


@functools.cache
def _converted_columns(alias: str, use_tz: bool) -> "list[tuple[int, Field[Any, Any], list[Any]]]":
    """The position of each column of ``job_columns`` that has converters, its field and
    its converters: most columns (text, integers) have none, and are taken as they come."""
    converters = _converters(alias, use_tz).values()
    return [(n, field, each) for n, (field, each) in enumerate(converters) if each]


@functools.cache
def _attnames() -> list[str]:
    return [field.attname for field in WorkerJob._meta.concrete_fields]


def _convert(
    value: Any, field: "Field[Any, Any]", converters: list[Any], connection: BaseDatabaseWrapper
) -> Any:
    for converter in converters:
        value = converter(value, field.cached_col, connection)
    return value


@functools.cache
def _job_columns(alias: str, prefix: str) -> str:
    return ", ".join(f"{prefix}{quoted}" for quoted in quoted_columns(alias).values())


@functools.cache
def quoted_columns(alias: str) -> dict[str, str]:
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


@functools.cache
def inserted_fields() -> "list[Field[Any, Any]]":
    return [field for field in WorkerJob._meta.concrete_fields if not field.primary_key]


@functools.cache
def _inserted_attnames() -> list[str]:
    return [field.attname for field in inserted_fields()]


@functools.cache
def _stamped_fields() -> "list[Field[Any, Any]]":
    """The fields that ``save`` sets to now (``auto_now``, ``auto_now_add``)."""
    return [
        field
        for field in inserted_fields()
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    ]


def prepared(
    field: "Field[Any, Any]", values: list[Any], connection: BaseDatabaseWrapper
) -> list[object]:
    """``values`` of ``field`` as raw SQL parameters (``_prepare``), each distinct value
    prepared once: most columns hold the same value in every row of a submission."""
    first = values[0]
    if all(value is first for value in values):  # the usual column
        return [_prepare(field.attname, first, connection)] * len(values)
    done: dict[tuple[type, Any], object] = {}
    column: list[object] = []
    for value in values:
        # The type too: True == 1 == 1.0. An empty dict (the data of a job given none) by its
        # type alone: each row has a dict of its own, and all are written alike.
        key = (value.__class__, EMPTY if value.__class__ is dict and not value else value)
        try:
            column.append(done[key])
        except KeyError:
            done[key] = _prepare(field.attname, value, connection)
            column.append(done[key])
        except TypeError:  # unhashable, such as a job's data: prepared each time
            column.append(_prepare(field.attname, value, connection))
    return column


EMPTY = object()  # in prepared()'s keys: the value is an empty dict


def is_null(column: list[object]) -> bool:
    """Whether every prepared value of ``column`` is NULL."""
    return column[0] is None and all(value is None for value in column)


@functools.cache
def _table(alias: str) -> str:
    """The queue's table, quoted for ``alias``'s SQL."""
    return connections[alias].ops.quote_name(WorkerJob._meta.db_table)


@functools.lru_cache(maxsize=64)
def _values_sql(alias: str, null: tuple[bool, ...], count: int) -> str:
    """``INSERT … VALUES … RETURNING id`` of ``count`` rows, each column's value a parameter
    or, where ``null`` says so, NULL. Made once for each shape: a submission's jobs are
    mostly alike, and so are the batches of a bulk."""
    row = f"({', '.join('NULL' if none else '%s' for none in null)})"
    head = f"INSERT INTO {_table(alias)} ({inserted_columns(alias)}) VALUES"
    return f"{head} {', '.join([row] * count)} RETURNING id"


@functools.cache
def inserted_columns(alias: str) -> str:
    """The inserted fields' columns, quoted for ``alias`` and joined, in their order."""
    quoted = quoted_columns(alias)
    return ", ".join(quoted[field.attname] for field in inserted_fields())
