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
    kept = connection.__dict__.setdefault("_portal_sql", {})
    written = kept.get((write, *args))
    if written is None:
        written = kept[(write, *args)] = write(connection, *args)
    return written


class Column:
    """An expression read as a column (a field's ``get_col(alias)``, or an expression with an
    ``output_field``): ``convert`` turns the database's value into Python's with the converters
    Django's compiler applies (the backend's, then the expression's)."""

    def __init__(self, connection: Any, expression: Any) -> None:
        self.expression = expression
        self.converters = [
            *connection.ops.get_db_converters(expression),
            *expression.get_db_converters(connection),
        ]

    def convert(self, value: Any, connection: Any) -> Any:
        for converter in self.converters:
            value = converter(value, self.expression, connection)
        return value
