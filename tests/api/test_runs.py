"""/api/v1/runs/: list with RunFilterSet, detail (plan, progress, queue position), event
tailing and cancel."""

import pytest

from portal.models import EnvironmentStatus, Run, RunKind, RunStatus
from tests.api.conftest import error_of
from tests.factories import make_environment, make_run, make_run_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(world):
    shop_env = make_environment(world.product, name="dev")
    parcel_env = make_environment(world.other_product, name="stage")
    return {
        "created": make_run(shop_env, kind=RunKind.CREATE, status=RunStatus.SUCCEEDED),
        "destroying": make_run(shop_env, kind=RunKind.DESTROY, status=RunStatus.RUNNING),
        "parcel": make_run(parcel_env, kind=RunKind.CREATE, status=RunStatus.FAILED, explanation="apply failed"),
    }


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return sorted(row["id"] for row in response.json()["results"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["created", "destroying", "parcel"]),
        ("kind=destroy", ["destroying"]),
        ("status=failed&status=running", ["destroying", "parcel"]),
        ("kind=create&status=succeeded", ["created"]),
    ],
)
def test_the_list_filters(api, runs, query, expected):
    assert ids(api.stranger.get(f"/api/v1/runs/?{query}")) == sorted(runs[name].pk for name in expected)


def test_filter_by_environment_and_account(api, world, runs):
    environment = runs["parcel"].environment_id
    assert ids(api.owner.get(f"/api/v1/runs/?environment={environment}")) == [runs["parcel"].pk]
    assert ids(api.owner.get(f"/api/v1/runs/?account={world.account.account_id}")) == sorted(
        [runs["created"].pk, runs["destroying"].pk]
    )


def test_an_unknown_kind_is_a_400(api, runs):
    assert error_of(api.owner.get("/api/v1/runs/?kind=explode"))["fields"].keys() == {"kind"}


def test_the_detail_has_plan_progress_stage_and_explanation(api, world):
    environment = make_environment(world.product, name="dev", status=EnvironmentStatus.PROVISIONING)
    run = make_run(
        environment,
        status=RunStatus.RUNNING,
        stage="apply",
        plan_summary={"add": 7, "change": 0, "destroy": 0},
        resources_planned=7,
        resources_done=3,
        explanation="applying",
    )
    body = api.stranger.get(f"/api/v1/runs/{run.pk}/").json()
    assert body["plan_summary"] == {"add": 7, "change": 0, "destroy": 0}
    assert body["progress"] == {"resources_done": 3, "resources_planned": 7, "percent": 43}
    assert body["stage"] == "apply" and body["explanation"] == "applying" and body["queue_position"] is None
    assert body["environment"] == {"id": environment.pk, "name": "dev", "product": "shop", "status": "provisioning"}
    assert body["github"] is None and body["rollback_run"] is None


def test_queued_runs_show_their_place_in_the_accounts_queue(api, world):
    first = make_run(make_environment(world.product, name="a"), status=RunStatus.QUEUED)
    second = make_run(make_environment(world.product, name="b"), status=RunStatus.QUEUED)
    make_run(make_environment(world.other_product, name="c"), status=RunStatus.QUEUED)  # another account
    assert api.owner.get(f"/api/v1/runs/{first.pk}/").json()["queue_position"] == 1
    assert api.owner.get(f"/api/v1/runs/{second.pk}/").json()["queue_position"] == 2


def test_a_rolled_back_create_links_to_its_rollback(api, world):
    environment = make_environment(world.product, name="dev", status=EnvironmentStatus.FAILED)
    failed = make_run(environment, status=RunStatus.FAILED)
    rollback = make_run(environment, kind=RunKind.ROLLBACK, rollback_of=failed)
    assert api.owner.get(f"/api/v1/runs/{failed.pk}/").json()["rollback_run"] == rollback.pk
    assert api.owner.get(f"/api/v1/runs/{rollback.pk}/").json()["rollback_of"] == failed.pk


def test_the_list_costs_the_same_queries_at_any_size(api, world, django_assert_max_num_queries):
    for index in range(15):
        make_run(make_environment(world.product, name=f"e{index}"), requested_by=world.owner)
    api.owner.get("/api/v1/runs/?limit=1")
    with django_assert_max_num_queries(3):  # token, count, page
        response = api.owner.get("/api/v1/runs/?limit=15")
    assert len(response.json()["results"]) == 15


# --- events ---------------------------------------------------------------------------------


def test_events_are_tailed_oldest_first_after_a_seq(api, world):
    run = make_run(make_environment(world.product), status=RunStatus.RUNNING)
    for index in range(5):
        make_run_event(run, f"line {index + 1}")
    page = api.stranger.get(f"/api/v1/runs/{run.pk}/events/?after=1&limit=3").json()
    assert [event["message"] for event in page["events"]] == ["line 2", "line 3", "line 4"]
    assert [event["seq"] for event in page["events"]] == [2, 3, 4]
    assert page["last_seq"] == 4 and page["has_more"] is True and page["finished"] is False
    page = api.owner.get(f"/api/v1/runs/{run.pk}/events/?after={page['last_seq']}").json()
    assert [event["seq"] for event in page["events"]] == [5] and page["has_more"] is False
    page = api.owner.get(f"/api/v1/runs/{run.pk}/events/?after=5").json()
    assert page["events"] == [] and page["last_seq"] == 5 and page["status"] == "running"


def test_events_of_a_finished_run_say_so(api, world):
    run = make_run(make_environment(world.product))
    page = api.owner.get(f"/api/v1/runs/{run.pk}/events/").json()
    assert page == {"run": run.pk, "status": "succeeded", "finished": True, "events": [], "last_seq": 0, "has_more": False}


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=0", "limit=5000"])
def test_bad_tail_parameters_are_a_400(api, world, query):
    run = make_run(make_environment(world.product))
    error = error_of(api.owner.get(f"/api/v1/runs/{run.pk}/events/?{query}"))
    assert set(error["fields"]) == {query.split("=")[0]}


def test_events_of_a_missing_run_are_404(api):
    assert api.owner.get("/api/v1/runs/999999/events/").status_code == 404


# --- cancel ---------------------------------------------------------------------------------


def test_cancelling_a_queued_run_drops_it(api, world):
    environment = make_environment(world.product, name="dev", status=EnvironmentStatus.PROVISIONING)
    run = make_run(environment, status=RunStatus.QUEUED)
    response = api.member.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 200
    body = response.json()
    assert body["result"] == "dropped" and body["run"]["status"] == "cancelled" and body["message"]


def test_cancelling_a_running_run_asks_it_to_stop(api, world):
    environment = make_environment(world.product, name="dev", status=EnvironmentStatus.PROVISIONING)
    run = make_run(environment, status=RunStatus.RUNNING)
    response = api.staff.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["result"] == "requested" and response.json()["run"]["cancel_requested_at"]
    assert response.json()["run"]["cancel_requested_by"]["username"] == "staff"


def test_cancelling_a_finished_run_changes_nothing(api, world):
    run = make_run(make_environment(world.product))
    response = api.owner.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 200 and response.json()["result"] == "finished"


def test_strangers_and_anonymous_cannot_cancel(api, world):
    run = make_run(make_environment(world.product, status=EnvironmentStatus.PROVISIONING), status=RunStatus.QUEUED)
    response = api.stranger.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 403 and error_of(response)["code"] == "permission_denied"
    assert api.anonymous.post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 401
    assert Run.objects.get(pk=run.pk).status == "queued"


def test_runs_are_read_only(api, runs):
    assert api.staff.delete(f"/api/v1/runs/{runs['created'].pk}/").status_code == 405
    assert api.staff.post("/api/v1/runs/", {}, format="json").status_code == 405
