"""The whole engine end to end: service -> Celery worker -> real Terraform -> portal state -> CMDB.

Uses the real processes from tests/processes.py: a web server (the Terraform http state
backend lives there) and a Celery worker, both on the test database.
"""

import json
import threading

import pytest
from django.db import connection

from portal.models import CidrAllocation, Endpoint, Environment, Run, RunStatus, StateLock, StateVersion
from portal.services import environments
from portal.services.errors import Conflict
from tests.factories import make_account, make_department, make_pool, make_product, make_user
from tests.waiting import wait_for_environment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(web_server, celery_worker):
    department = make_department("payments")
    account = make_account(department, dns_zone="sandbox.example.test", max_concurrent_runs=2)
    make_pool(account, "10.60.0.0/16", prefix_length=24)
    return {
        "account": account,
        "product": make_product(department, slug="shop"),
        "owner": make_user("owner", departments=[department]),
    }


def latest_state(env):
    version = StateVersion.objects.filter(environment=env).order_by("-id").first()
    return version, json.loads(bytes(version.content)) if version else None


def create(world, name="dev", **params):
    return environments.request_create(
        user=world["owner"], product=world["product"], pattern_slug="demo-ecs", name=name, parameters=params
    )


def test_create_makes_the_environment_ready_with_its_fqdn_and_delete_empties_the_state(world):
    run = create(world, delay_seconds=1)
    env = wait_for_environment(run.environment_id, {"ready"})

    endpoint = Endpoint.objects.get(environment=env)
    assert endpoint.fqdn == "app-dev.sandbox.example.test"
    assert endpoint.url == "https://app-dev.sandbox.example.test/"
    assert env.outputs["app_fqdn"] == endpoint.fqdn and env.outputs["network_cidr"] == env.cidr

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.plan_summary["add"] == 7 and len(run.plan_summary["resources"]) == 7
    assert (run.resources_done, run.resources_planned) == (7, 7)
    assert [c["step"] for c in run.commands] == ["init", "plan", "apply"]
    assert all("TF_HTTP_PASSWORD" not in json.dumps(c) or "[REDACTED]" in json.dumps(c) for c in run.commands)
    messages = list(run.events.order_by("seq").values_list("message", flat=True))
    assert any("Apply complete! Resources: 7 added" in m for m in messages)
    assert list(run.events.values_list("seq", flat=True).order_by("seq")) == list(range(1, len(messages) + 1))
    version, document = latest_state(env)
    assert version.resource_count == 7 and version.run_id == run.pk

    destroy = environments.request_delete(user=world["owner"], environment=env)
    env = wait_for_environment(env.pk, {"deleted"})
    destroy.refresh_from_db()
    assert destroy.status == RunStatus.SUCCEEDED and env.deleted_at is not None
    version, document = latest_state(env)
    assert document["resources"] == [] and version.run_id == destroy.pk
    assert Endpoint.objects.get(pk=endpoint.pk).released_at is not None
    assert not CidrAllocation.objects.filter(environment=env, released_at__isnull=True).exists()
    assert StateLock.objects.count() == 0


def test_a_failed_apply_is_rolled_back_to_an_empty_state(world):
    run = create(world, name="drill", fail_on="service")
    env = wait_for_environment(run.environment_id, {"failed"})
    run.refresh_from_db()
    rollback = Run.objects.get(rollback_of=run)
    assert run.status == RunStatus.FAILED and "fail_on=service" in run.explanation
    assert rollback.status == RunStatus.SUCCEEDED and rollback.kind == "rollback"
    assert run.events.exists() and rollback.events.filter(message__contains="destroyed").exists()
    assert "rolled back" in env.status_reason
    _, document = latest_state(env)
    assert document["resources"] == []
    assert not Endpoint.objects.filter(environment=env).exists()
    assert not CidrAllocation.objects.filter(environment=env, released_at__isnull=True).exists()


def test_a_failing_rollback_keeps_the_state_and_needs_attention(world):
    run = create(world, name="stuck", fail_on="service", fail_on_destroy="network")
    env = wait_for_environment(run.environment_id, {"rollback_failed"})
    rollback = Run.objects.get(rollback_of=run)
    assert rollback.status == RunStatus.FAILED and "destroy" in rollback.explanation
    version, document = latest_state(env)
    assert version.resource_count >= 1  # nothing forgotten: what still exists is in the state
    assert any(r["name"] == "network" for r in document["resources"])
    assert CidrAllocation.objects.filter(environment=env, released_at__isnull=True).exists()


def test_two_simultaneous_requests_for_one_environment_make_one_run(world):
    barrier = threading.Barrier(2)
    results = []

    def request():
        try:
            barrier.wait()
            results.append(create(world, name="twin"))
        except Conflict as exc:
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = [r for r in results if isinstance(r, Run)]
    refusals = [r for r in results if isinstance(r, Conflict)]
    assert len(runs) == 1 and len(refusals) == 1
    assert "already exists" in refusals[0].message
    assert Environment.objects.filter(name="twin").count() == 1 and Run.objects.count() == 1
    wait_for_environment(runs[0].environment_id, {"ready"})
