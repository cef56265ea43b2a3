"""/api/v1/environments/: list with the browser's filters, detail, create, delete, retry.

Create tests never need a worker: the dispatch runs on commit, and these tests run inside
one transaction that is never committed (`django_capture_on_commit_callbacks(execute=False)`
shows that a dispatch was scheduled).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.models import Environment, EnvironmentStatus, GitHubMirror, Run, RunKind, RunStatus
from tests.api.conftest import error_of
from tests.factories import make_endpoint, make_environment, make_run, make_user

pytestmark = pytest.mark.django_db

CREATE = {"product": "shop", "pattern": "demo-ecs", "name": "dev", "parameters": {"delay_seconds": 3}}


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return sorted(row["name"] for row in response.json()["results"])


@pytest.fixture
def inventory(world):
    """dev (shop, ready, one live and one released endpoint), stage (parcel, ready),
    broken (shop, failed, another pattern), gone (shop, deleted)."""
    dev = make_environment(world.product, name="dev", requested_by=world.owner, cidr="10.80.0.0/24")
    make_endpoint(dev, "app.dev.payments.sandbox.test")
    make_endpoint(dev, "old.dev.payments.sandbox.test", released_at=timezone.now())
    stage = make_environment(world.other_product, name="stage")
    make_endpoint(stage, "app.stage.logistics.sandbox.test")
    broken = make_environment(world.product, name="broken", status=EnvironmentStatus.FAILED, pattern_slug="ecs-fullstack")
    gone = make_environment(world.product, name="gone", status=EnvironmentStatus.DELETED)
    return {"dev": dev, "stage": stage, "broken": broken, "gone": gone}


# --- list and filters -----------------------------------------------------------------------


def test_the_list_shows_live_environments_with_their_live_endpoints(api, inventory):
    response = api.stranger.get("/api/v1/environments/")
    assert names(response) == ["broken", "dev", "stage"]
    dev = next(row for row in response.json()["results"] if row["name"] == "dev")
    assert [e["fqdn"] for e in dev["endpoints"]] == ["app.dev.payments.sandbox.test"]
    assert dev["product"]["slug"] == "shop" and dev["department"]["slug"] == "payments"
    assert dev["account"]["name"] == "payments-sandbox" and dev["requested_by"]["username"] == "owner"
    assert dev["account"]["simulated"] is False  # a local account
    assert dev["latest_run"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("department=payments", ["broken", "dev"]),
        ("product=parcel", ["stage"]),
        ("pattern=ecs-fullstack", ["broken"]),
        ("status=failed", ["broken"]),
        ("status=failed&status=ready", ["broken", "dev", "stage"]),
        ("status=deleted", ["gone"]),
        ("include_deleted=true", ["broken", "dev", "gone", "stage"]),
        ("fqdn=APP.dev.payments.sandbox.test.", ["dev"]),
        ("fqdn=old.dev.payments.sandbox.test", []),
        ("q=sta", ["stage"]),
        ("q=parcel", ["stage"]),
        ("q=app.dev", ["dev"]),
        ("q=shop&status=ready", ["dev"]),
    ],
)
def test_the_list_filters_are_the_browsers(api, inventory, query, expected):
    assert names(api.owner.get(f"/api/v1/environments/?{query}")) == expected


def test_the_account_filter_takes_the_aws_account_id(api, world, inventory):
    assert names(api.owner.get(f"/api/v1/environments/?account={world.other_account.account_id}")) == ["stage"]


def test_an_unknown_status_is_a_400(api, inventory):
    error = error_of(api.owner.get("/api/v1/environments/?status=sleeping"))
    assert error["code"] == "invalid" and "status" in error["fields"]


def test_the_list_is_paginated_with_limit_and_offset(api, world):
    for index in range(5):
        make_environment(world.product, name=f"e{index}")
    page = api.owner.get("/api/v1/environments/?limit=2&offset=1").json()
    assert page["count"] == 5 and len(page["results"]) == 2
    assert page["next"].endswith("limit=2&offset=3") and page["previous"]
    assert [row["name"] for row in page["results"]] == ["e3", "e2"]  # newest first


def test_the_number_of_queries_does_not_grow_with_the_page(api, world):
    for index in range(12):
        environment = make_environment(world.product, name=f"e{index}", requested_by=world.owner)
        make_endpoint(environment)
        make_endpoint(environment)
        make_run(environment)
        make_run(environment, kind=RunKind.DESTROY, status=RunStatus.FAILED)

    api.owner.get("/api/v1/environments/?limit=1")  # the token's first use records last_used_at

    def count(limit, extra=""):
        with CaptureQueriesContext(connection) as queries:
            response = api.owner.get(f"/api/v1/environments/?limit={limit}{extra}")
        assert len(response.json()["results"]) == limit
        return len(queries)

    assert count(2) == count(12) <= 6
    assert count(2, "&cursor=") == count(12, "&cursor=") <= 5  # keyset pages: no count
    first = api.owner.get("/api/v1/environments/?limit=1").json()["results"][0]
    assert first["latest_run"]["kind"] == "destroy" and len(first["endpoints"]) == 2


def _path(link: str) -> str:
    return link.split("testserver", 1)[1]


def test_keyset_pages_walk_the_whole_list_without_a_count(api, world, inventory):
    for index in range(5):
        make_environment(world.product, name=f"e{index}")
    everything = [row["id"] for row in api.owner.get("/api/v1/environments/?limit=100").json()["results"]]
    assert len(everything) == 8
    seen, pages, link = [], [], "/api/v1/environments/?limit=3&cursor="
    while link:
        page = api.owner.get(link).json()
        assert page["count"] is None
        seen += [row["id"] for row in page["results"]]
        pages.append(page)
        link = page["next"] and _path(page["next"])
    assert seen == everything and [len(page["results"]) for page in pages] == [3, 3, 2]
    assert pages[0]["previous"] is None and "offset" not in pages[1]["next"]
    # Back from the last page: the page before it, then the first.
    back = api.owner.get(_path(pages[2]["previous"])).json()
    assert [row["id"] for row in back["results"]] == everything[3:6]
    first = api.owner.get(_path(back["previous"])).json()
    assert [row["id"] for row in first["results"]] == everything[:3] and first["previous"] is None
    # Filters stay in the links.
    filtered = api.owner.get("/api/v1/environments/?limit=1&cursor=&product=shop").json()
    assert "product=shop" in filtered["next"]


def test_keyset_pages_neither_repeat_nor_skip_rows_added_meanwhile(api, world):
    for index in range(4):
        make_environment(world.product, name=f"e{index}")
    page = api.owner.get("/api/v1/environments/?limit=2&cursor=").json()
    assert [row["name"] for row in page["results"]] == ["e3", "e2"]
    make_environment(world.product, name="newer")  # offsets would now show e2 again
    following = api.owner.get(_path(page["next"])).json()
    assert [row["name"] for row in following["results"]] == ["e1", "e0"] and following["next"] is None


@pytest.mark.parametrize("cursor", ["a0", "b0", "a" + "9" * 19, "b" + "9" * 19])
def test_every_cursor_the_schema_allows_is_a_page_with_links_that_work(api, world, inventory, cursor):
    page = api.owner.get(f"/api/v1/environments/?cursor={cursor}")
    assert page.status_code == 200 and page.json()["count"] is None
    for link in (page.json()["next"], page.json()["previous"]):
        if link:
            assert api.owner.get(_path(link)).status_code == 200


@pytest.mark.parametrize("cursor", ["abc", "x12", "a-1", "a", "b" + "9" * 20, "%00", "a1%20", "A12"])
def test_a_cursor_the_api_did_not_give_is_a_400(api, world, cursor):
    response = api.owner.get(f"/api/v1/environments/?cursor={cursor}")
    assert response.status_code == 400
    assert "not a cursor this API gave" in error_of(response)["fields"]["cursor"][0]


def test_cursor_and_offset_together_are_a_400(api, world):
    response = api.owner.get("/api/v1/environments/?cursor=&offset=10")
    assert response.status_code == 400 and "either cursor or offset" in error_of(response)["fields"]["offset"][0]


# --- detail ---------------------------------------------------------------------------------


def test_the_detail_has_outputs_orphans_latest_run_queue_position_and_github(api, world, inventory):
    dev = inventory["dev"]
    Environment.objects.filter(pk=dev.pk).update(
        outputs={"app_fqdn": "app.dev.payments.sandbox.test"}, orphans=[{"arn": "arn:aws:s3:::left"}]
    )
    make_run(dev, kind=RunKind.CREATE, status=RunStatus.SUCCEEDED)
    # another environment of the same account is queued first
    make_run(inventory["broken"], kind=RunKind.DESTROY, status=RunStatus.QUEUED)
    latest = make_run(dev, kind=RunKind.DESTROY, status=RunStatus.QUEUED)
    GitHubMirror.objects.create(
        run=latest, repository="org/provisioning", issue_number=7, issue_url="https://github.test/org/provisioning/issues/7"
    )
    body = api.stranger.get(f"/api/v1/environments/{dev.pk}/").json()
    assert body["outputs"] == {"app_fqdn": "app.dev.payments.sandbox.test"}
    assert body["orphans"] == [{"arn": "arn:aws:s3:::left"}] and body["cidr"] == "10.80.0.0/24"
    assert body["latest_run"]["id"] == latest.pk and body["latest_run"]["queue_position"] == 2
    assert body["github"] == [
        {
            "run": latest.pk,
            "repository": "org/provisioning",
            "issue_number": 7,
            "issue_url": "https://github.test/org/provisioning/issues/7",
            "commit_sha": "",
            "commit_url": "",
            "closed": False,
        }
    ]
    assert [e["fqdn"] for e in body["endpoints"]] == ["app.dev.payments.sandbox.test"]


def test_a_deleted_environment_is_still_found_by_id(api, inventory):
    response = api.owner.get(f"/api/v1/environments/{inventory['gone'].pk}/")
    assert response.status_code == 200 and response.json()["status"] == "deleted"


# --- create ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "member", "staff"])
def test_members_and_staff_request_an_environment(api, world, role, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = getattr(api, role).post("/api/v1/environments/", CREATE, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert callbacks, "the dispatch must be scheduled on commit"
    environment, run = body["environment"], body["run"]
    assert environment["name"] == "dev" and environment["status"] == "provisioning"
    assert environment["parameters"]["delay_seconds"] == 3 and environment["cidr"] == "10.80.0.0/24"
    assert run["kind"] == "create" and run["status"] == "queued" and run["queue_position"] == 1
    assert run["environment"]["id"] == environment["id"] == Environment.objects.get().pk
    assert environment["latest_run"]["id"] == run["id"]
    assert Run.objects.get().requested_by == getattr(world, role)


def test_strangers_and_anonymous_cannot_request(api):
    assert api.stranger.post("/api/v1/environments/", CREATE, format="json").status_code == 403
    assert api.anonymous.post("/api/v1/environments/", CREATE, format="json").status_code == 401
    assert Environment.objects.count() == 0


def test_a_name_is_suggested_when_none_is_given(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = api.owner.post("/api/v1/environments/", {"product": "shop", "pattern": "demo-ecs"}, format="json")
    assert response.status_code == 202 and response.json()["environment"]["name"] == "sandbox-1"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({**CREATE, "parameters": {"delay_seconds": 9999, "colour": "red"}}, {"parameters.delay_seconds", "parameters.colour"}),
        ({**CREATE, "name": "Not_Valid"}, {"name"}),
        ({**CREATE, "pattern": "no-such-pattern"}, {"pattern"}),
        ({**CREATE, "product": "no-such-product"}, {"product"}),
        ({**CREATE, "parameters": "not an object"}, {"parameters"}),
        ({"pattern": "demo-ecs"}, {"product"}),
    ],
)
def test_invalid_requests_name_their_fields_and_leave_nothing(api, body, fields):
    response = api.owner.post("/api/v1/environments/", body, format="json")
    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == fields
    assert Environment.objects.count() == 0


def test_an_account_of_another_department_is_refused(api, world):
    body = {**CREATE, "account": world.other_account.account_id}
    error = error_of(api.owner.post("/api/v1/environments/", body, format="json"))
    assert set(error["fields"]) == {"account"} and "another department" in error["message"]


def test_a_taken_name_is_a_409(api, world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        assert api.owner.post("/api/v1/environments/", CREATE, format="json").status_code == 202
        response = api.member.post("/api/v1/environments/", CREATE, format="json")
    assert response.status_code == 409 and set(error_of(response)["fields"]) == {"name"}


# --- delete and retry -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "member", "staff"])
def test_delete_queues_a_destroy_run(api, world, role, django_capture_on_commit_callbacks):
    environment = make_environment(world.product, name="dev")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = getattr(api, role).delete(f"/api/v1/environments/{environment.pk}/")
    assert response.status_code == 202 and callbacks
    body = response.json()
    assert body["run"]["kind"] == "destroy" and body["run"]["status"] == "queued"
    assert body["environment"]["status"] == "deleting"


def test_strangers_cannot_delete(api, world):
    environment = make_environment(world.product, name="dev")
    response = api.stranger.delete(f"/api/v1/environments/{environment.pk}/")
    assert response.status_code == 403 and error_of(response)["code"] == "permission_denied"
    assert api.anonymous.delete(f"/api/v1/environments/{environment.pk}/").status_code == 401
    environment.refresh_from_db()
    assert environment.status == "ready" and not environment.runs.exists()


def test_an_environment_with_a_run_in_progress_cannot_be_deleted(api, world):
    environment = make_environment(world.product, name="dev", status=EnvironmentStatus.PROVISIONING)
    make_run(environment, status=RunStatus.RUNNING)
    response = api.owner.delete(f"/api/v1/environments/{environment.pk}/")
    assert response.status_code == 409 and error_of(response)["code"] == "conflict"


def test_delete_of_a_missing_environment_is_404(api):
    assert api.owner.delete("/api/v1/environments/424242/").status_code == 404


def test_retry_requeues_an_incomplete_environment(api, world, django_capture_on_commit_callbacks):
    environment = make_environment(world.product, name="dev", status=EnvironmentStatus.INCOMPLETE)
    make_run(environment, status=RunStatus.CANCELLED)
    assert api.stranger.post(f"/api/v1/environments/{environment.pk}/retry/").status_code == 403
    with django_capture_on_commit_callbacks(execute=False):
        response = api.member.post(f"/api/v1/environments/{environment.pk}/retry/")
    assert response.status_code == 202
    assert response.json()["run"]["kind"] == "create" and response.json()["environment"]["status"] == "provisioning"


def test_retry_of_a_ready_environment_is_a_409(api, world):
    environment = make_environment(world.product, name="dev")
    response = api.owner.post(f"/api/v1/environments/{environment.pk}/retry/")
    assert response.status_code == 409 and "incomplete" in error_of(response)["message"]


def test_an_inactive_member_is_refused(world):
    from tests.api.conftest import token_client

    user = make_user("leaver", departments=[world.payments])
    client = token_client(user)
    user.is_active = False
    user.save()
    assert client.post("/api/v1/environments/", CREATE, format="json").status_code == 401


def test_the_fast_list_row_is_exactly_what_the_declared_fields_render(world, inventory):
    """EnvironmentSerializer builds list rows directly from plain rows (issue 14); its declared
    fields are the schema. Both must give the same row, for every shape of environment."""
    from rest_framework import serializers

    from portal import selectors
    from portal.api.serializers import EnvironmentSerializer

    make_run(inventory["dev"], kind=RunKind.CREATE, status=RunStatus.SUCCEEDED, started_at=timezone.now(),
             finished_at=timezone.now(), resources_planned=7, resources_done=7, explanation="Applied.")
    make_run(inventory["broken"], kind=RunKind.CREATE, status=RunStatus.RUNNING, started_at=timezone.now(),
             resources_planned=3, resources_done=1)
    Environment.objects.filter(pk=inventory["stage"].pk).update(requested_by=None)
    Environment.objects.filter(pk=inventory["gone"].pk).update(deleted_at=timezone.now())
    serializer = EnvironmentSerializer()
    instances = list(selectors.environments_for_list())
    rows = selectors.environment_list_rows([environment.pk for environment in instances])
    assert len(rows) == len(instances) == 4
    assert [row["id"] for row in rows] == [environment.pk for environment in instances]  # newest first
    assert {bool(row["latest_run"]) for row in rows} == {True, False}
    assert any(row["live_endpoints"] for row in rows) and any(row["requested_by__id"] is None for row in rows)
    for row, environment in zip(rows, instances):
        fast = serializer.to_representation(row)
        assert fast == serializers.Serializer.to_representation(serializer, environment)
        assert list(fast) == list(serializer.fields)  # the same keys, in the schema's order
    # An instance (not a list row) is rendered field by field, with the same result.
    plain = Environment.objects.get(pk=inventory["dev"].pk)
    plain.live_endpoints = list(plain.endpoints.filter(released_at__isnull=True).order_by("fqdn"))
    assert serializer.to_representation(plain) == serializer.to_representation(
        selectors.environment_list_rows([plain.pk])[0]
    )