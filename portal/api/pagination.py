"""Pagination for every API list: `?limit=&offset=` with a total count (NetBox style)."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

MAX_OFFSET = 2**63 - 1


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
    """Pick the page's ids with a narrow query, then load only those rows with their joins.

    Sorting 10,000 environments joined to product, department, account and user made the
    database sort 10,000 wide rows to keep 50 (26 ms on PostgreSQL); sorting only
    (created_at, id) and joining 50 rows takes 3 ms. It stays one query: the page of ids is a
    subquery (`id IN (SELECT id ... ORDER BY ... LIMIT n OFFSET m)`), and the rows come from
    `view.get_queryset()` (joins, prefetches, the same ordering) restricted to those ids.
    """

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.count = self.get_count(queryset)
        self.offset = self.get_offset(request)
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        if self.count == 0 or self.offset > self.count:
            return []
        page_ids = queryset.values("pk")[self.offset : self.offset + self.limit]
        return list(view.get_queryset().filter(pk__in=page_ids))
