"""Pagination for every API list: `?limit=&offset=` with a total count (NetBox style)."""

from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 1000
