"""Idempotency-Key: a doubled or retried POST gets the first answer and does nothing twice.

The concurrency test at the bottom sends 20 identical POSTs at once through a real server
(pytest-django's live_server: one thread and one database connection per request).
"""

import json
import threading
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import Environment, IdempotencyRecord, Run, RunStatus
from portal.services import idempotency, tokens
from tests.api.conftest import error_of
from tests.factories import make_environment, make_run

CREATE = {"product": "shop", "pattern": "demo-ecs", "name": "dev"}


def post(client, path, body=None, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(path, body or {}, format="json", **headers)


@pytest.mark.django_db
class TestOneAfterTheOther:
    def test_a_retry_gets_the_first_answer_and_creates_nothing_more(self, api, django_capture_on_commit_callbacks):
        key = str(uuid.uuid4())
        with django_capture_on_commit_callbacks(execute=False):
            first = post(api.owner, "/api/v1/environments/", CREATE, key)
            second = post(api.owner, "/api/v1/environments/", CREATE, key)
        assert first.status_code == second.status_code == 202
        assert second.json() == first.json()
        assert second["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
        assert Environment.objects.count() == 1 and Run.objects.count() == 1
        record = IdempotencyRecord.objects.get()
        assert (record.method, record.path, record.response_status) == ("POST", "/api/v1/environments/", 202)

    def test_key_order_and_whitespace_of_the_body_do_not_matter(self, api, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=False):
            first = api.owner.post("/api/v1/environments/", '{"product": "shop", "pattern": "demo-ecs"}',
                                   content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1")
            second = api.owner.post("/api/v1/environments/", '{"pattern":"demo-ecs","product":"shop"}',
                                    content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1")
        assert second.json() == first.json() and Environment.objects.count() == 1

    def test_the_same_key_with_another_body_is_a_422(self, api, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=False):
            post(api.owner, "/api/v1/environments/", CREATE, "k")
            response = post(api.owner, "/api/v1/environments/", {**CREATE, "name": "other"}, "k")
        assert response.status_code == 422
        error = error_of(response)
        assert error["code"] == "idempotency_key_reused" and "different request body" in error["message"]
        assert set(error["fields"]) == {"Idempotency-Key"}
        assert Environment.objects.count() == 1

    def test_the_same_key_on_another_endpoint_is_a_422(self, api, world, django_capture_on_commit_callbacks):
        environment = make_environment(world.product, name="old", status="incomplete")
        with django_capture_on_commit_callbacks(execute=False):
            post(api.owner, "/api/v1/environments/", CREATE, "k")
            response = post(api.owner, f"/api/v1/environments/{environment.pk}/retry/", None, "k")
        assert response.status_code == 422 and "POST /api/v1/environments/" in error_of(response)["message"]

    def test_a_refused_request_frees_its_key(self, api, django_capture_on_commit_callbacks):
        bad = post(api.owner, "/api/v1/environments/", {**CREATE, "parameters": {"cpu": 3}}, "k")
        assert bad.status_code == 400 and not IdempotencyRecord.objects.exists()
        with django_capture_on_commit_callbacks(execute=False):
            fixed = post(api.owner, "/api/v1/environments/", CREATE, "k")
        assert fixed.status_code == 202

    def test_a_crash_after_the_service_rolls_back_the_environment_and_frees_the_key(self, api, monkeypatch):
        from portal.api.views import EnvironmentViewSet

        monkeypatch.setattr(EnvironmentViewSet, "accepted", lambda self, run: 1 / 0)
        api.owner.raise_request_exception = False
        response = post(api.owner, "/api/v1/environments/", CREATE, "k")
        assert response.status_code == 500
        assert not Environment.objects.exists() and not IdempotencyRecord.objects.exists()

    def test_keys_belong_to_their_user(self, api, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=False):
            assert post(api.owner, "/api/v1/environments/", {**CREATE, "name": "a"}, "shared").status_code == 202
            assert post(api.member, "/api/v1/environments/", {**CREATE, "name": "b"}, "shared").status_code == 202
        assert Environment.objects.count() == 2

    def test_a_key_still_in_progress_is_a_409_after_a_short_wait(self, api, world, monkeypatch):
        monkeypatch.setattr(idempotency, "DEFAULT_WAIT_SECONDS", 0.1)
        path = "/api/v1/environments/"
        IdempotencyRecord.objects.create(
            user=world.owner, key="busy", method="POST", path=path,
            request_hash=idempotency.request_fingerprint("POST", path, CREATE),
        )
        response = post(api.owner, path, CREATE, "busy")
        assert response.status_code == 409 and response["Retry-After"] == "1"
        assert error_of(response)["code"] == "idempotency_key_in_progress"
        assert not Environment.objects.exists()

    def test_a_claim_left_by_a_dead_process_is_taken_over(self, api, world, django_capture_on_commit_callbacks):
        path = "/api/v1/environments/"
        record = IdempotencyRecord.objects.create(
            user=world.owner, key="orphan", method="POST", path=path,
            request_hash=idempotency.request_fingerprint("POST", path, CREATE),
        )
        IdempotencyRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - idempotency.STALE_AFTER - timedelta(seconds=1))
        with django_capture_on_commit_callbacks(execute=False):
            assert post(api.owner, path, CREATE, "orphan").status_code == 202

    def test_an_expired_key_may_be_used_again(self, api, world, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=False):
            post(api.owner, "/api/v1/environments/", CREATE, "old-key")
            IdempotencyRecord.objects.update(created_at=timezone.now() - idempotency.TTL - timedelta(seconds=1))
            response = post(api.owner, "/api/v1/environments/", {**CREATE, "name": "again"}, "old-key")
        assert response.status_code == 202 and Environment.objects.count() == 2
        assert idempotency.purge_expired() == 0

    @pytest.mark.parametrize("key", ["", "has space", "x" * 256, "ünïcode"])
    def test_a_malformed_key_is_a_400(self, api, key):
        response = api.owner.post("/api/v1/environments/", CREATE, format="json",
                                  headers={"Idempotency-Key": key.encode().decode("latin-1")})
        assert response.status_code == 400 and set(error_of(response)["fields"]) == {"Idempotency-Key"}

    def test_without_a_key_nothing_is_recorded(self, api, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=False):
            post(api.owner, "/api/v1/environments/", CREATE)
        assert not IdempotencyRecord.objects.exists()

    def test_a_doubled_cancel_answers_like_the_first(self, api, world):
        run = make_run(make_environment(world.product, status="provisioning"), status=RunStatus.QUEUED)
        first = post(api.owner, f"/api/v1/runs/{run.pk}/cancel/", None, "c")
        second = post(api.owner, f"/api/v1/runs/{run.pk}/cancel/", None, "c")
        assert first.json()["result"] == second.json()["result"] == "dropped"
        assert post(api.owner, f"/api/v1/runs/{run.pk}/cancel/").json()["result"] == "finished"

    def test_a_doubled_delete_answers_like_the_first(self, api, world, django_capture_on_commit_callbacks):
        environment = make_environment(world.product, name="dev")
        with django_capture_on_commit_callbacks(execute=False):
            first = api.owner.delete(f"/api/v1/environments/{environment.pk}/", HTTP_IDEMPOTENCY_KEY="d")
            second = api.owner.delete(f"/api/v1/environments/{environment.pk}/", HTTP_IDEMPOTENCY_KEY="d")
            third = api.owner.delete(f"/api/v1/environments/{environment.pk}/")
        assert first.status_code == second.status_code == 202 and first.json() == second.json()
        assert third.status_code == 409


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_identical_posts_create_one_environment(world, live_server):
    """Real concurrency: 20 threads, each its own HTTP connection, server thread and DB
    connection, released together by a barrier."""
    # Both slots of the account are busy, so the new run stays queued: nothing is sent to the
    # broker, where a worker started by another test could pick it up.
    for index in range(world.account.max_concurrent_runs):
        make_run(make_environment(world.product, name=f"busy{index}", status="provisioning"), status=RunStatus.RUNNING)
    _, key = tokens.create_token(user=world.owner, name="concurrency")
    # urllib sends `Connection: close`: each server thread ends (and closes its database
    # connection) with its response; kept-alive ones would outlive the test database.
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/environments/",
        data=json.dumps({**CREATE, "parameters": {"delay_seconds": 1}}).encode(),
        headers={"Authorization": f"Token {key}", "Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"},
        method="POST",
    )
    barrier = threading.Barrier(20)
    responses: list = [None] * 20

    def send(index):
        barrier.wait(timeout=30)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                responses[index] = (response.status, dict(response.headers), json.loads(response.read()))
        except urllib.error.HTTPError as error:
            responses[index] = (error.code, dict(error.headers), error.read().decode()[:300])

    threads = [threading.Thread(target=send, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)

    assert [status for status, _, _ in responses] == [202] * 20, [r for r in responses if r[0] != 202]
    first = responses[0][2]
    assert all(body == first for _, _, body in responses)
    assert sum(headers.get("Idempotent-Replayed") == "true" for _, headers, _ in responses) == 19
    assert Environment.objects.filter(name="dev").count() == 1
    assert Run.objects.filter(environment__name="dev").count() == 1
    assert IdempotencyRecord.objects.get().completed_at is not None
