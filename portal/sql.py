"""SQL written by hand for the few reads every request makes, with Django's conversions.

Building a queryset and compiling it costs Python that does not change between calls of a
fixed read: for the pods page's stamp it was 0.3 ms of a 1.4 ms view, ten times the statement.
Such reads are written once per database connection, from the models' ``_meta`` (names quoted
by the connection), and their columns converted as Django's compiler converts them
(``SQLCompiler.apply_converters``): ``accounts.sessions``, ``deployments.live``, ``portal.cache``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

Written = TypeVar("Written")


def once_per_connection(connection: Any, write: Callable[..., Written], *args: Any) -> Written:
    """``write(connection, *args)``, made on the connection's first use and kept with it (a
    connection belongs to one thread; a new one, in another thread, writes it again)."""
    key = ("portal.sql", write, *args)
    written = connection.__dict__.get(key)
    if written is None:
        written = connection.__dict__[key] = write(connection, *args)
    return written


class Column:
    """A model field read as a column: ``convert`` turns the database's value into the field's,
    with the converters Django's compiler applies (the backend's, then the field's)."""

    def __init__(self, connection: Any, field: Any, alias: str | None = None) -> None:
        self.col = field.get_col(alias or field.model._meta.db_table)
        self.converters = connection.ops.get_db_converters(self.col) + self.col.get_db_converters(connection)

    def convert(self, value: Any, connection: Any) -> Any:
        for converter in self.converters:
            value = converter(value, self.col, connection)
        return value
