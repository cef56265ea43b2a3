"""The portal's state backend with real Terraform as its client (through the web server)."""

import json
import threading

import pytest

from portal.models import RunStatus, StateLock, StateVersion
from portal.services.credentials import digest
from provisioning.redact import Redactor
from provisioning.terraform import TerraformRunner, TerraformSettings
from tests.factories import lock_info, make_environment, make_run, make_state_lock

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MAIN_TF = """
terraform {
  backend "http" {}
}

variable "n" {
  type    = number
  default = 0
}

resource "terraform_data" "counter" {
  input = var.n
}

output "n" {
  value = terraform_data.counter.output
}
"""


@pytest.fixture
def environment(web_server):
    return make_environment(status="provisioning")


def credential(environment, token="tok-" + "x" * 40):
    run = make_run(environment, status=RunStatus.RUNNING, state_token_hash=digest(token))
    return run, token


def runner(tmp_path, web_server, environment, run, token, *, lock_timeout=0.0, events=None, extra_env=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "main.tf").write_text(MAIN_TF)
    address = f"{web_server}/state/{environment.pk}/"
    env = {
        "TF_HTTP_ADDRESS": address,
        "TF_HTTP_LOCK_ADDRESS": address,
        "TF_HTTP_UNLOCK_ADDRESS": address,
        "TF_HTTP_USERNAME": f"run-{run.pk}",
        "TF_HTTP_PASSWORD": token,
        "TF_HTTP_RETRY_MAX": "0",
        **(extra_env or {}),
    }
    return TerraformRunner(
        TerraformSettings(lock_timeout_seconds=lock_timeout),
        tmp_path,
        env,
        redactor=Redactor(),
        on_event=(events.append if events is not None else (lambda e: None)),
    )


def apply_args(n):
    return ["apply", "-input=false", "-auto-approve", "-no-color", "-lock-timeout=0s", f"-var=n={n}"]


def test_plan_apply_and_destroy_go_through_the_portal(tmp_path, web_server, environment):
    run, token = credential(environment)
    tf = runner(tmp_path, web_server, environment, run, token)
    assert tf.init(60).ok
    assert tf.plan(60).ok
    assert tf.apply(60).ok
    latest = StateVersion.objects.filter(environment=environment).latest()
    assert latest.resource_count == 1 and latest.run_id == run.pk
    assert tf.destroy(60).ok
    assert StateVersion.objects.filter(environment=environment).latest().resource_count == 0
    assert StateLock.objects.count() == 0  # Terraform unlocked after each step


def test_an_apply_while_the_lock_is_held_fails_naming_the_holder_and_changes_nothing(tmp_path, web_server, environment):
    run, token = credential(environment)
    make_state_lock(environment, info=lock_info(who="alice@worker-7", operation="OperationTypeApply"))
    events = []
    tf = runner(tmp_path, web_server, environment, run, token, lock_timeout=2, events=events)
    assert tf.init(60).ok
    assert tf.plan(60).ok  # a plan takes no lock (it writes no state)
    apply = tf.apply(60)
    assert not apply.ok
    text = apply.stdout + apply.stderr_tail + "".join(e.line for e in events)
    assert "Error acquiring the state lock" in text and "alice@worker-7" in text
    assert not StateVersion.objects.filter(environment=environment).exists()


def test_an_apply_waits_for_a_lock_that_is_released(tmp_path, web_server, environment):
    run, token = credential(environment)
    lock = make_state_lock(environment, info=lock_info(who="bob@worker-2"))
    tf = runner(tmp_path, web_server, environment, run, token, lock_timeout=30)
    assert tf.init(60).ok
    assert tf.plan(60).ok
    threading.Timer(2.0, lambda: StateLock.objects.filter(pk=lock.pk).delete()).start()
    assert tf.apply(60).ok  # -lock-timeout retried until the holder let go
    assert StateVersion.objects.filter(environment=environment).exists()


def test_the_server_keeps_an_idle_connection_open_longer_than_terraform_waits_between_lock_retries(web_server):
    # Terraform waits 1, 2, 4, 8 then 16 s between LOCK attempts on a reused connection. With
    # gunicorn's default 2 s keep-alive the server closed it as the 2 s retry was sent, and the
    # LOCK failed with EOF (see gunicorn.conf.py). 17 s would be exact; 5 s shows it is not 2.
    import http.client
    import time
    from urllib.parse import urlsplit

    address = urlsplit(web_server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    connection.request("GET", "/healthz")
    first = connection.getresponse()
    first.read()
    assert first.status == 200 and not first.will_close
    sock = connection.sock
    time.sleep(5)
    connection.request("GET", "/healthz")  # http.client reconnects only if it noticed a close
    second = connection.getresponse()
    second.read()
    assert second.status == 200 and connection.sock is sock  # the same connection answered
    connection.close()


def test_a_wrong_credential_is_refused(tmp_path, web_server, environment):
    run, _ = credential(environment)
    tf = runner(tmp_path, web_server, environment, run, "not-the-token")
    init = tf.init(60)
    assert not init.ok
    assert "requires auth" in init.stdout + init.stderr_tail


def test_an_expired_credential_is_refused(tmp_path, web_server, environment):
    run, token = credential(environment)
    type(run).objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    init = runner(tmp_path, web_server, environment, run, token).init(60)
    assert not init.ok
    assert "requires auth" in init.stdout + init.stderr_tail
    assert StateVersion.objects.count() == 0


@pytest.mark.timeout(900)  # fifty fresh Terraform processes; about 2 minutes on a loaded 2-core box
def test_fifty_sequential_applies_keep_fifty_ordered_state_versions(tmp_path, web_server, environment):
    run, token = credential(environment)
    tf = runner(tmp_path, web_server, environment, run, token)
    assert tf.init(60).ok
    for n in range(1, 51):
        result = tf.run("apply", apply_args(n), 60)
        assert result.ok, result.stderr_tail
    versions = list(StateVersion.objects.filter(environment=environment).order_by("id"))
    assert len(versions) == 50
    serials = [v.serial for v in versions]
    assert serials == sorted(serials) and len(set(serials)) == 50
    assert len({v.lineage for v in versions}) == 1

    assert [json.loads(bytes(v.content))["outputs"]["n"]["value"] for v in versions] == list(range(1, 51))
