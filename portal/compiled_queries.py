"""`.values()` queries compiled to SQL once and run many times with fresh ids.

Building a queryset, resolving its columns and joins and compiling it to SQL is pure Python
that repeats on every request with the same result; only the ids change. For the environment
list at 100,000 environments the ORM's part of its three row queries was about 9 ms of a
16 ms page (issue 14: the raw SQL of the widest one runs in 2.9 ms, the ORM took 7 ms). A
`CompiledValues` asks Django for the SQL once per (database, number of ids) - Django still
writes every statement, quoting and dialect included - and afterwards only binds the ids,
runs it and applies the same converters `.values()` applies (SQLite returns date-times as
text that they parse). Must not import services, views or the API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from django.db import connections
from django.db.models import QuerySet

# The ids a template is compiled with: values no table holds, found again in the compiled
# parameters by position (a filter may add parameters of its own before or after them).
_PLACEHOLDER_BASE = -(2**62)


class CompiledValues:
    """`build(ids)` returns a `.values()` queryset filtered by those ids; calling this object
    with ids returns the same list of dicts `list(build(ids))` would, without rebuilding it.

    One compiled statement per (database alias, len(ids)); page sizes are few in practice and
    at most `MAX_TEMPLATES` are kept."""

    MAX_TEMPLATES = 64

    def __init__(self, build: Callable[[Sequence[int]], QuerySet], using: str = "default"):
        self.build = build
        self.using = using
        self._templates: dict[tuple[str, int], tuple] = {}
        self._lock = threading.Lock()

    def __call__(self, ids: Sequence[int]) -> list[dict]:
        ids = list(ids)
        if not ids:
            return []
        connection = connections[self.using]
        sql, params, positions, names, converters = self._template(connection, len(ids))
        bound = list(params)
        for position, index in positions:
            bound[position] = ids[index]
        with connection.cursor() as cursor:
            cursor.execute(sql, bound)
            rows = cursor.fetchall()
        if converters:
            rows = [
                tuple(_convert(value, converters.get(index), connection) for index, value in enumerate(row))
                for row in rows
            ]
        return [dict(zip(names, row)) for row in rows]

    def _template(self, connection, count: int) -> tuple:
        # The database's name too: tests point one alias at another database (and vendor).
        key = (connection.alias, str(connection.settings_dict.get("NAME")), count)
        template = self._templates.get(key)
        if template is None:
            with self._lock:
                template = self._templates.get(key) or self._compile(connection, count)
                if len(self._templates) >= self.MAX_TEMPLATES:
                    self._templates.clear()
                self._templates[key] = template
        return template

    def _compile(self, connection, count: int) -> tuple:
        placeholders = [_PLACEHOLDER_BASE - index for index in range(count)]
        queryset = self.build(placeholders)
        compiler = queryset.query.get_compiler(using=self.using, connection=connection)
        sql, params = compiler.as_sql()
        params = tuple(params)
        index_of = {value: index for index, value in enumerate(placeholders)}
        positions = [(position, index_of[value]) for position, value in enumerate(params)
                     if type(value) is int and value in index_of]
        if {index for _, index in positions} != set(range(count)):
            raise ValueError("every id must appear among the compiled query's parameters")
        names = [*queryset.query.extra_select, *queryset.query.values_select, *queryset.query.annotation_select]
        select = [column for column, _, _ in compiler.select][: len(names)]
        if len(select) != len(names):
            raise ValueError("a compiled values() query must select exactly its named columns")
        converters = compiler.get_converters(select)
        return sql, params, positions, names, converters


def _convert(value, converters, connection):
    if converters is None:
        return value
    functions, expression = converters
    for function in functions:
        value = function(value, expression, connection)
    return value
