"""portal.compiled_queries: a `.values()` query compiled once gives what the ORM gives."""

import datetime

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from portal.compiled_queries import CompiledValues
from portal.models import Environment, Run, RunKind, RunStatus
from tests.factories import make_endpoint, make_environment, make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def environments():
    found = []
    for index in range(5):
        environment = make_environment(name=f"e{index}")
        make_endpoint(environment, f"app.e{index}.sandbox.test")
        make_run(environment, kind=RunKind.CREATE, status=RunStatus.SUCCEEDED)
        found.append(environment)
    return found


def test_it_returns_what_the_orm_returns_for_any_number_of_ids(environments):
    build = lambda ids: Environment.objects.filter(pk__in=ids).order_by("-id").values(  # noqa: E731
        "id", "name", "created_at", "deleted_at", "parameters", "product__slug", "product__department__name"
    )
    compiled = CompiledValues(build)
    ids = [environment.pk for environment in environments]
    for chosen in (ids[:1], ids[:3], ids, ids[1:4], list(reversed(ids))):
        assert compiled(chosen) == list(build(chosen))
    rows = compiled(ids)
    # Converted as the ORM converts them (SQLite returns date-times and JSON as text).
    assert isinstance(rows[0]["created_at"], datetime.datetime) and rows[0]["created_at"].tzinfo is not None
    assert isinstance(rows[0]["parameters"], dict)
    assert compiled([]) == [] and compiled([10**12]) == []


def test_it_compiles_once_per_number_of_ids_and_runs_one_query_each_time(environments):
    calls = []

    def build(ids):
        calls.append(len(ids))
        return Run.objects.filter(environment_id__in=ids).values("id", "environment_id")

    compiled = CompiledValues(build)
    ids = [environment.pk for environment in environments]
    for _ in range(3):
        with CaptureQueriesContext(connection) as queries:
            assert len(compiled(ids)) == 5
        assert len(queries) == 1
        compiled(ids[:2])
    assert calls == [5, 2]


def test_ids_used_twice_and_other_parameters_are_all_bound(environments):
    ids = [environment.pk for environment in environments]
    build = lambda ids: Environment.objects.filter(  # noqa: E731
        Q(pk__in=ids) | Q(runs__environment_id__in=ids), name__startswith="e"
    ).distinct().order_by("id").values("id")
    compiled = CompiledValues(build)
    assert compiled(ids[2:4]) == list(build(ids[2:4])) == [{"id": ids[2]}, {"id": ids[3]}]


def test_a_query_without_the_ids_is_refused():
    compiled = CompiledValues(lambda ids: Environment.objects.values("id"))
    with pytest.raises(ValueError, match="every id"):
        compiled([1])
