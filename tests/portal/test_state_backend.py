"""The Terraform http-backend endpoint, driven through Django's test client.

Real Terraform as the client is exercised in tests/portal/test_state_with_terraform.py.
"""

import base64
import hashlib
import json

import pytest

from portal.models import RunStatus, StateLock, StateLockRelease, StateVersion
from portal.services import state
from portal.services.credentials import digest
from tests.factories import lock_info, make_environment, make_run, make_state_lock, make_superuser

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-token-for-tests"


def auth(run, token=TOKEN):
    return "Basic " + base64.b64encode(f"run-{run.pk}:{token}".encode()).decode()


@pytest.fixture
def run():
    environment = make_environment(status="provisioning")
    return make_run(environment, status=RunStatus.RUNNING, state_token_hash=digest(TOKEN))


def url(run):
    return f"/state/{run.environment_id}/"


def state_doc(serial=1, lineage="lin-1", resources=0):
    return json.dumps(
        {"version": 4, "serial": serial, "lineage": lineage, "resources": [
            {"mode": "managed", "type": "terraform_data", "name": f"r{i}", "instances": [{}]} for i in range(resources)
        ]}
    ).encode()


def md5(body):
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def test_it_answers_204_when_there_is_no_state(client, run):
    response = client.get(url(run), HTTP_AUTHORIZATION=auth(run))
    assert response.status_code == 204


def test_it_refuses_a_missing_or_wrong_credential(client, run):
    assert client.get(url(run)).status_code == 401
    assert client.get(url(run), HTTP_AUTHORIZATION=auth(run, "wrong")).status_code == 401


def test_it_refuses_the_credential_for_another_environment(client, run):
    other = make_environment()
    assert client.get(f"/state/{other.pk}/", HTTP_AUTHORIZATION=auth(run)).status_code == 401


def test_it_refuses_the_credential_once_the_run_has_ended(client, run):
    type(run).objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    assert client.get(url(run), HTTP_AUTHORIZATION=auth(run)).status_code == 401


def test_it_stores_each_post_as_a_new_version_while_locked(client, run):
    info = lock_info()
    assert client.generic("LOCK", url(run), json.dumps(info), HTTP_AUTHORIZATION=auth(run)).status_code == 200
    for serial in (1, 2):
        body = state_doc(serial, resources=serial)
        response = client.post(
            f"{url(run)}?ID={info['ID']}", body, content_type="application/json",
            HTTP_AUTHORIZATION=auth(run), HTTP_CONTENT_MD5=md5(body),
        )
        assert response.status_code == 200
    versions = list(StateVersion.objects.filter(environment_id=run.environment_id).order_by("id"))
    assert [(v.serial, v.resource_count, v.run_id) for v in versions] == [(1, 1, run.pk), (2, 2, run.pk)]
    got = client.get(url(run), HTTP_AUTHORIZATION=auth(run))
    assert got.status_code == 200 and json.loads(got.content)["serial"] == 2


def test_it_refuses_a_post_without_the_lock(client, run):
    body = state_doc()
    response = client.post(url(run), body, content_type="application/json", HTTP_AUTHORIZATION=auth(run))
    assert response.status_code == 409
    assert StateVersion.objects.count() == 0


def test_it_refuses_a_post_with_another_lock_id_and_names_the_holder(client, run):
    holder = make_state_lock(run.environment, info=lock_info(who="alice@worker-1"))
    body = state_doc()
    response = client.post(f"{url(run)}?ID=not-the-holder", body, content_type="application/json", HTTP_AUTHORIZATION=auth(run))
    assert response.status_code == 423
    assert response.json()["Who"] == "alice@worker-1" and response.json()["ID"] == holder.lock_id


def test_it_refuses_a_body_that_does_not_match_its_md5(client, run):
    info = lock_info()
    client.generic("LOCK", url(run), json.dumps(info), HTTP_AUTHORIZATION=auth(run))
    body = state_doc()
    response = client.post(
        f"{url(run)}?ID={info['ID']}", body, content_type="application/json",
        HTTP_AUTHORIZATION=auth(run), HTTP_CONTENT_MD5=md5(b"something else"),
    )
    assert response.status_code == 400 and "Content-MD5" in response.json()["error"]
    assert StateVersion.objects.count() == 0


def test_a_second_lock_gets_423_with_the_current_holder(client, run):
    first = lock_info(who="first@host")
    assert client.generic("LOCK", url(run), json.dumps(first), HTTP_AUTHORIZATION=auth(run)).status_code == 200
    response = client.generic("LOCK", url(run), json.dumps(lock_info(who="second@host")), HTTP_AUTHORIZATION=auth(run))
    assert response.status_code == 423
    assert response.json() == first


def test_unlock_needs_the_holder_id(client, run):
    info = lock_info()
    client.generic("LOCK", url(run), json.dumps(info), HTTP_AUTHORIZATION=auth(run))
    wrong = client.generic("UNLOCK", url(run), json.dumps(lock_info()), HTTP_AUTHORIZATION=auth(run))
    assert wrong.status_code == 423 and StateLock.objects.count() == 1
    right = client.generic("UNLOCK", url(run), json.dumps(info), HTTP_AUTHORIZATION=auth(run))
    assert right.status_code == 200 and StateLock.objects.count() == 0


def test_force_unlock_is_recorded_with_who_and_why(run):
    admin = make_superuser()
    make_state_lock(run.environment)
    with pytest.raises(ValueError):
        state.force_unlock(run.environment_id, user=admin, reason="  ")
    assert state.force_unlock(run.environment_id, user=admin, reason="worker host died") is True
    release = StateLockRelease.objects.get()
    assert (release.released_by, release.reason) == (admin, "worker host died")
    assert StateLock.objects.count() == 0
    assert state.force_unlock(run.environment_id, user=admin, reason="again") is False


def _statements(captured) -> list[str]:
    """The SQL a request ran, without transaction control (BEGIN, COMMIT, SAVEPOINT ...)."""
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")
    return [q["sql"] for q in captured.captured_queries if not q["sql"].lstrip().upper().startswith(control)]


def test_the_hot_path_reads_only_what_it_needs_and_locks_with_one_write(client, run):
    """Terraform calls the endpoint several times per step (issue 14): authentication reads three
    columns of the run (not its commands and plan), LOCK and UNLOCK are one indexed write each,
    GET reads only the newest content."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    type(run).objects.filter(pk=run.pk).update(commands=[{"step": "init", "stdout": "x" * 10_000}], plan_summary={"add": 1})
    info = json.dumps(lock_info("lock-1"))
    with CaptureQueriesContext(connection) as locking:
        assert client.generic("LOCK", url(run), info, content_type="application/json", HTTP_AUTHORIZATION=auth(run)).status_code == 200
    authentication, *rest = _statements(locking)
    assert '"commands"' not in authentication and '"plan_summary"' not in authentication
    assert len(rest) == 1 and rest[0].startswith("INSERT INTO \"portal_statelock\"")

    body = state_doc(serial=1)
    assert client.generic("POST", url(run) + "?ID=lock-1", body, content_type="application/json",
                          HTTP_AUTHORIZATION=auth(run)).status_code == 200
    with CaptureQueriesContext(connection) as reading:
        response = client.get(url(run), HTTP_AUTHORIZATION=auth(run))
    assert response.status_code == 200 and response.content == body
    assert len(_statements(reading)) == 2 and '"content"' in _statements(reading)[1] and '"serial"' not in _statements(reading)[1]

    with CaptureQueriesContext(connection) as unlocking:
        assert client.generic("UNLOCK", url(run), info, content_type="application/json", HTTP_AUTHORIZATION=auth(run)).status_code == 200
    assert [sql.split()[0] for sql in _statements(unlocking)] == ["SELECT", "DELETE"]
    assert not StateLock.objects.exists()


def test_a_second_lock_is_refused_with_the_holder_and_a_repeated_one_is_fine(client, run):
    first = json.dumps(lock_info("lock-1"))
    assert client.generic("LOCK", url(run), first, content_type="application/json", HTTP_AUTHORIZATION=auth(run)).status_code == 200
    assert client.generic("LOCK", url(run), first, content_type="application/json", HTTP_AUTHORIZATION=auth(run)).status_code == 200
    other = client.generic("LOCK", url(run), json.dumps(lock_info("lock-2")), content_type="application/json", HTTP_AUTHORIZATION=auth(run))
    assert other.status_code == 423 and other.json()["ID"] == "lock-1"
    # UNLOCK with another ID leaves the lock alone and names its holder.
    wrong = client.generic("UNLOCK", url(run), json.dumps(lock_info("lock-2")), content_type="application/json", HTTP_AUTHORIZATION=auth(run))
    assert wrong.status_code == 423 and StateLock.objects.get().lock_id == "lock-1"
