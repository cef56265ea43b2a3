"""Pagination for every API list: `?limit=&offset=` with a total count (NetBox style); the
environment list also has keyset pages (`?cursor=`)."""

import re

from django.core.exceptions import ImproperlyConfigured
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.utils.urls import remove_query_param, replace_query_param

MAX_OFFSET = 2**63 - 1
CURSOR_RE = re.compile(r"^[ab][0-9]{1,19}$")


class Pagination(LimitOffsetPagination):
    """`limit` 1-1000 (default 50) and `offset` >= 0, checked: DRF's own silently falls back to
    the default for `limit=abc` or a negative offset, so the API accepted what its schema
    refuses (issue 12). The schema states the same bounds."""

    default_limit = 50
    max_limit = 1000

    def _whole_number(self, request, name: str, minimum: int, maximum: int) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
            raise ValidationError({name: [f"must be a whole number from {minimum} to {maximum}"]})
        return int(raw)

    def get_limit(self, request):
        limit = self._whole_number(request, self.limit_query_param, 1, self.max_limit)
        return self.default_limit if limit is None else limit

    def get_offset(self, request):
        offset = self._whole_number(request, self.offset_query_param, 0, MAX_OFFSET)
        return 0 if offset is None else offset

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.limit_query_param, "required": False, "in": "query",
                "description": f"Number of results to return per page (1-{self.max_limit}, default {self.default_limit}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit},
            },
            {
                "name": self.offset_query_param, "required": False, "in": "query",
                "description": "The initial index from which to return the results.",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            },
        ]


class IdsFirstPagination(Pagination):
    """Pick the page's ids with a narrow query, then load only those rows with their joins;
    and, with `?cursor=`, keyset pages that cost the same at any depth and skip the count.

    Sorting 10,000 environments joined to product, department, account and user made the
    database sort 10,000 wide rows to keep 50 (26 ms on PostgreSQL); sorting only the ids and
    joining 50 rows takes 3 ms. The rows come from the view's `page_rows(ids)`, which it must
    have (plain rows, see `selectors.environment_list_rows`).

    Keyset mode (`?cursor=`, empty for the first page; then the `next` and `previous` links):
    the list must be ordered by `-pk`; a page is `pk < last seen` (or `pk > first seen`
    backwards) through the primary key index, so page 2,000 costs what page 1 costs, and
    `count` is null: counting 100,000 filtered rows was a third of a page's time (issue 14).
    Rows added or removed between pages neither repeat nor vanish, as they do with offsets.
    """

    cursor_query_param = "cursor"
    _AFTER, _BEFORE = "a", "b"

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.limit = self.get_limit(request)
        self.cursor = None
        page_rows = view.page_rows
        if self.cursor_query_param in request.query_params:
            return page_rows(self._keyset_ids(queryset, request))
        self.count = self.get_count(queryset)
        self.offset = self.get_offset(request)
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        if self.count == 0 or self.offset > self.count:
            return []
        return page_rows(list(queryset.values_list("pk", flat=True)[self.offset : self.offset + self.limit]))

    def _keyset_ids(self, queryset, request) -> list[int]:
        if self.offset_query_param in request.query_params:
            raise ValidationError({self.offset_query_param: ["give either cursor or offset, not both"]})
        if tuple(queryset.query.order_by) != ("-id",):
            raise ImproperlyConfigured("keyset pages need a list ordered by -id")
        direction, position = self._decode(request.query_params[self.cursor_query_param])
        self.count = None
        if direction == self._BEFORE:
            ids = list(queryset.filter(pk__gt=position).order_by("pk").values_list("pk", flat=True)[: self.limit + 1])
            more_before = len(ids) > self.limit
            ids = ids[: self.limit][::-1]
            self.next_cursor = self._encode(self._AFTER, ids[-1]) if ids else self._encode(self._AFTER, position + 1)
            self.previous_cursor = self._encode(self._BEFORE, ids[0]) if more_before else None
        else:
            after = queryset.filter(pk__lt=position) if position is not None else queryset
            ids = list(after.values_list("pk", flat=True)[: self.limit + 1])
            more_after = len(ids) > self.limit
            ids = ids[: self.limit]
            self.next_cursor = self._encode(self._AFTER, ids[-1]) if more_after else None
            self.previous_cursor = None
            if position is not None:
                self.previous_cursor = self._encode(self._BEFORE, ids[0] if ids else max(position - 1, 0))
        self.cursor = True
        return ids

    def _encode(self, direction: str, pk: int) -> str:
        return f"{direction}{pk}"

    def _decode(self, raw: str) -> tuple[str, int | None]:
        """`a<id>`: the rows after that id in the list's order (smaller ids); `b<id>`: the rows
        before it. Every value the schema's pattern allows is a position; ids beyond the
        largest possible one are read as it."""
        if raw == "":
            return self._AFTER, None
        if not CURSOR_RE.fullmatch(raw):
            raise ValidationError({self.cursor_query_param: [
                "not a cursor this API gave: follow the next or previous link, or give cursor= (empty) for the first page"
            ]})
        return raw[0], min(int(raw[1:]), MAX_OFFSET)

    def _cursor_link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        url = remove_query_param(self.request.build_absolute_uri(), self.offset_query_param)
        return replace_query_param(url, self.cursor_query_param, cursor)

    def get_next_link(self):
        return self._cursor_link(self.next_cursor) if self.cursor else super().get_next_link()

    def get_previous_link(self):
        return self._cursor_link(self.previous_cursor) if self.cursor else super().get_previous_link()

    def get_paginated_response_schema(self, schema):
        answer = super().get_paginated_response_schema(schema)
        answer["properties"]["count"] = {
            "type": "integer", "nullable": True, "example": 123,
            "description": "All matching rows; null for keyset pages (`cursor`).",
        }
        return answer

    def get_schema_operation_parameters(self, view):
        return super().get_schema_operation_parameters(view) + [{
            "name": self.cursor_query_param, "required": False, "in": "query",
            "description": "Keyset pages: empty for the first page, then the value in the `next` or "
            "`previous` link. Costs the same at any depth; `count` is null. Not with `offset`.",
            "schema": {"type": "string", "pattern": f"^$|{CURSOR_RE.pattern}"},
        }]
