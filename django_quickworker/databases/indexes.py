"""Indexes that every database can build."""

from typing import Any

from django.core.checks import CheckMessage
from django.db import models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.backends.ddl_references import Statement


class PartialIndex(models.Index):
    """A partial index where the database has them (PostgreSQL, SQLite); elsewhere (MySQL,
    MariaDB) a full index led by the columns its condition tests, so that queries on that
    condition walk the same order there, over the matching rows first.

    Django would build the full index without those columns (and warn, models.W037).
    """

    def create_sql(
        self,
        model: type[models.Model],
        schema_editor: BaseDatabaseSchemaEditor,
        using: str = "",
        **kwargs: Any,
    ) -> Statement:
        if schema_editor.connection.features.supports_partial_indexes:
            return super().create_sql(model, schema_editor, using, **kwargs)
        leading = [name for name in self.condition_fields() if name not in self.fields]
        full = models.Index(fields=[*leading, *self.fields], name=self.name)
        return full.create_sql(model, schema_editor, using, **kwargs)

    def condition_fields(self) -> list[str]:
        """The fields the condition tests, in order (e.g. ``status`` for status=...)."""
        names: list[str] = []
        pending: list[Any] = [self.condition]
        while pending:
            node = pending.pop(0)
            if isinstance(node, models.Q):
                pending[:0] = node.children
            elif node[0].split("__")[0] not in names:
                names.append(node[0].split("__")[0])
        return names

    def check(self, model: type[models.Model], connection: Any) -> list[CheckMessage]:
        # Our full-index stand-in is what W037 asks for: nothing to warn about.
        return [
            message for message in super().check(model, connection) if message.id != "models.W037"
        ]
