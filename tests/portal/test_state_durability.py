"""The rules that keep Terraform state from being lost and claims true (issue 11), without
Terraform: the state endpoint's size limit and strange bodies, recovering a state Terraform
left on disk, messages derived from the stored state, the reaper after a blind gap, the run
folder sweeper and the recorder's ordered, spilling buffer.

Real faults (a database stopped, the web server killed, workers SIGKILLed, cancels at random
moments) are injected by the fault suite in tests/faults (`make test-faults`).
"""

import base64
import hashlib
import json
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from portal.models import EnvironmentStatus, ReaperPass, Run, RunEvent, RunKind, RunStage, RunStatus, StateVersion
from portal.services import runs as transitions
from portal.services import state, workdirs
from portal.services.credentials import digest
from portal.services.execution import RunRecorder
from portal.services.reaper import reap_expired
from tests.factories import lock_info, make_environment, make_run, make_state_lock, make_state_version
from tests.portal.test_state_backend import TOKEN, auth

pytestmark = pytest.mark.django_db

@pytest.fixture
def run():
    environment = make_environment(status="provisioning")
    return make_run(environment, status=RunStatus.RUNNING, state_token_hash=digest(TOKEN), worker="host:1")


def document(serial=1, lineage="lin-1", resources=0, padding=0):
    return json.dumps({
        "version": 4, "serial": serial, "lineage": lineage, "padding": "x" * padding,
        "resources": [{"mode": "managed", "type": "terraform_data", "name": f"r{i}", "instances": [{}]} for i in range(resources)],
    }).encode()


def post(client, run, body, lock_id):
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    return client.generic(
        "POST", f"/state/{run.environment_id}/?ID={lock_id}", body, content_type="application/json",
        HTTP_AUTHORIZATION=auth(run), HTTP_CONTENT_MD5=md5,
    )


# --- the state endpoint ----------------------------------------------------------------------


def test_it_stores_a_20_mib_state_that_djangos_upload_limit_would_refuse(client, run):
    lock = make_state_lock(run.environment, run=run)
    body = document(resources=3, padding=20 * 1024 * 1024)
    response = post(client, run, body, lock.lock_id)
    assert response.status_code == 200, response.content
    stored = StateVersion.objects.get(environment=run.environment)
    assert stored.size == len(body) > 20 * 2**20 and stored.resource_count == 3
    assert bytes(stored.content) == body


@override_settings(STATE_MAX_BYTES=2 * 1024 * 1024)
def test_a_state_over_the_limit_gets_413_and_nothing_is_stored(client, run):
    lock = make_state_lock(run.environment, run=run)
    response = post(client, run, document(padding=3 * 1024 * 1024), lock.lock_id)
    assert response.status_code == 413 and b"limit is 2097152 bytes" in response.content
    assert not StateVersion.objects.exists()


@pytest.mark.parametrize("body, message", [
    (b'{"serial": 1e999, "lineage": "l"}', "serial"),
    (b'{"serial": 1000000000000000000000000000000, "lineage": "l"}', "serial"),
    (b'{"serial": true, "lineage": "l"}', "serial"),
    (b'{"serial": 1, "lineage": "l", "resources": 5}', "resources"),
    (b'{"serial": 1, "lineage": "l", "resources": [{"instances": 3}]}', "instances"),
    (b'{"serial": 1, "lineage": ""}', "lineage"),
    (b'[1, 2]', "object"),
    (b'{"a":' * 100000, "JSON"),
], ids=["inf", "10**30", "bool", "resources-int", "instances-int", "lineage-empty", "array", "deep"])
def test_a_strange_state_body_gets_400_not_500(client, run, body, message):
    lock = make_state_lock(run.environment, run=run)
    response = post(client, run, body, lock.lock_id)
    assert response.status_code == 400 and message in json.loads(response.content)["error"]


def test_a_username_with_a_unicode_digit_is_refused_not_a_500(client, run):
    credentials = base64.b64encode(f"run-\u00b2:{TOKEN}".encode()).decode()
    response = client.get(f"/state/{run.environment_id}/", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code == 401


# --- recovering what Terraform left on disk ----------------------------------------------------


def test_a_recovered_state_is_stored_as_a_marked_version(run):
    make_state_version(run.environment, serial=4, lineage="lin-1", resources=2)
    version = state.recover_state(run.environment_id, run.pk, document(serial=5, resources=7), source="box:/runs/x/errored.tfstate")
    assert version.recovered_from == "box:/runs/x/errored.tfstate" and version.resource_count == 7
    # The same document again: nothing new (the sweeper may meet a file the run stored).
    assert state.recover_state(run.environment_id, run.pk, document(serial=5, resources=7), source="again") is None
    assert StateVersion.objects.filter(environment=run.environment).count() == 2


@pytest.mark.parametrize("stored, body, reason", [
    ({"serial": 4, "lineage": "lin-1"}, document(serial=3), "older than the stored 4"),
    ({"serial": 4, "lineage": "lin-1"}, document(serial=5, lineage="other"), "lineage other is not the stored one"),
])
def test_a_recovered_state_that_does_not_continue_the_history_is_refused(run, stored, body, reason):
    make_state_version(run.environment, resources=1, **stored)
    with pytest.raises(state.RecoveryRefused, match=reason):
        state.recover_state(run.environment_id, run.pk, body, source="x")


def test_a_recovered_state_is_refused_while_another_run_holds_the_lock(run):
    other = make_run(make_environment(), status=RunStatus.SUCCEEDED)
    make_state_lock(run.environment, run=other, info=lock_info())
    with pytest.raises(state.RecoveryRefused, match=f"locked by run #{other.pk}"):
        state.recover_state(run.environment_id, run.pk, document(), source="x")


# --- claims come from the stored state ---------------------------------------------------------


def test_a_destroy_terraform_called_done_is_not_a_delete_while_the_stored_state_lists_resources(run):
    Run.objects.filter(pk=run.pk).update(kind=RunKind.DESTROY)
    run.refresh_from_db()
    make_state_version(run.environment, resources=3)
    transitions.succeed_destroy(run, "host:1")
    run.refresh_from_db()
    env = run.environment
    env.refresh_from_db()
    assert run.status == RunStatus.FAILED and "still lists 3 resource(s)" in run.explanation
    assert env.status == EnvironmentStatus.DELETE_FAILED and "The stored state lists 3 resource(s)" in env.status_reason
    # Exactly what is left, by address.
    assert "they still exist (terraform_data.r0, terraform_data.r1, terraform_data.r2)." in env.status_reason


def test_what_is_left_names_at_most_ten_addresses_and_module_and_index_keys(run):
    from portal.services.state import STORED_STATE_SENTENCE_RE, what_the_stored_state_says

    version = make_state_version(run.environment, resources=12)
    document = json.loads(bytes(version.content))
    document["resources"][0].update(module="module.network", instances=[{"index_key": 0}, {"index_key": "b"}])
    StateVersion.objects.filter(pk=version.pk).update(content=json.dumps(document).encode(), resource_count=13)
    sentence = what_the_stored_state_says(run.environment_id)
    assert sentence.startswith('The stored state lists 13 resource(s); they still exist (module.network.terraform_data.r0[0], '
                               'module.network.terraform_data.r0["b"], terraform_data.r1, ')
    assert sentence.endswith("terraform_data.r8, and 3 more).")
    # An older reason's sentence is found whole, dots and all, to be brought up to date.
    assert STORED_STATE_SENTENCE_RE.sub("X.", f"Delete failed. {sentence} Retry.") == "Delete failed. X. Retry."


def test_a_create_retry_stopped_before_apply_keeps_what_the_stored_state_lists(run):
    make_state_version(run.environment, resources=2)  # left by the earlier, interrupted create
    transitions.fail_run(run, "host:1", status=RunStatus.CANCELLED, explanation="Cancelled during plan.", stage_reached="plan")
    env = run.environment
    env.refresh_from_db()
    assert env.status == EnvironmentStatus.INCOMPLETE and "The stored state lists 2 resource(s)" in env.status_reason
    assert "nothing was created" not in env.status_reason


def test_an_interrupted_rollback_with_an_empty_stored_state_says_nothing_exists(run):
    Run.objects.filter(pk=run.pk).update(kind=RunKind.ROLLBACK, lease_expires_at=timezone.now() - timedelta(seconds=5))
    make_state_version(run.environment, resources=0)
    ReaperPass.objects.create(name="leases", at=timezone.now())
    assert reap_expired() == {run.pk: "interrupted"}
    env = run.environment
    env.refresh_from_db()
    assert env.status == EnvironmentStatus.ROLLBACK_FAILED
    assert "The stored state lists 0 resource(s): nothing it tracked exists any more." in env.status_reason
    assert "still exist" not in env.status_reason


def test_a_state_unknown_run_says_so_instead_of_claiming_a_rollback(run):
    make_state_version(run.environment, resources=1)
    transitions.fail_run(run, "host:1", explanation="State unknown: ...", stage_reached="apply", state_unknown=True)
    env = run.environment
    env.refresh_from_db()
    assert env.status == EnvironmentStatus.INCOMPLETE
    assert "State unknown" in env.status_reason and "The stored state lists 1 resource(s)" in env.status_reason
    assert not Run.objects.filter(environment=env, kind=RunKind.ROLLBACK).exists()


# --- the reaper after a blind gap ---------------------------------------------------------------


def test_after_a_gap_the_reaper_renews_leases_before_it_reaps(run, settings):
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=30))
    ReaperPass.objects.create(name="leases", at=timezone.now() - timedelta(seconds=90))  # e.g. the database was down
    assert reap_expired() == {}
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.lease_expires_at > timezone.now()
    assert "lease renewed once" in RunEvent.objects.filter(run=run).last().message
    # The worker really is gone: the next pass after the lease lapses reaps it.
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert reap_expired() == {run.pk: "interrupted"}


# --- run folders -------------------------------------------------------------------------------


def test_a_folder_holding_an_unstored_state_is_kept_then_swept_into_the_portal(run, tmp_path, settings):
    settings.RUN_WORKDIR_ROOT = tmp_path
    folder = workdirs.new_folder(run.pk)
    folder.mkdir()
    (folder / "errored.tfstate").write_bytes(document(serial=2, resources=7))
    assert workdirs.remove_if_safe(folder) is False and folder.exists()
    # While the run is running, the sweeper leaves it alone.
    assert workdirs.sweep() == {} and folder.exists()
    transitions.fail_run(run, "host:1", status=RunStatus.INTERRUPTED, explanation="worker lost", stage_reached="apply")
    assert workdirs.sweep() == {folder.name: "removed"}
    assert not folder.exists()
    stored = StateVersion.objects.get(environment=run.environment)
    assert stored.resource_count == 7 and stored.recovered_from.endswith("errored.tfstate")
    env = run.environment
    env.refresh_from_db()
    assert "The stored state lists 7 resource(s)" in env.status_reason


def test_a_folder_without_unstored_state_is_removed(run, tmp_path, settings):
    settings.RUN_WORKDIR_ROOT = tmp_path
    folder = workdirs.new_folder(run.pk)
    (folder / ".terraform").mkdir(parents=True)
    (folder / "tfplan").write_bytes(b"plan")
    assert workdirs.remove_if_safe(folder) is True and not folder.exists()


# --- the recorder ------------------------------------------------------------------------------


def test_the_recorder_spills_past_its_memory_and_writes_everything_in_order(run, tmp_path, monkeypatch):
    monkeypatch.setattr(RunRecorder, "MEMORY_ITEMS", 3)
    recorder = RunRecorder(run, "host:1", tmp_path / "spill.jsonl")
    for i in range(10):
        recorder.note(f"line {i}")
        if i == 4:
            recorder._add({"stage": "plan"})
    assert recorder.pending == 11 and (tmp_path / "spill.jsonl").exists()
    assert recorder.flush() is True
    messages = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", "message"))
    assert [m for _, m in messages] == [f"line {i}" for i in range(5)] + ["Stage: plan"] + [f"line {i}" for i in range(5, 10)]
    assert [s for s, _ in messages] == list(range(1, 12))
    assert not (tmp_path / "spill.jsonl").exists()


def test_the_recorder_writes_each_stage_before_it_starts_with_the_lines_before_it(run, tmp_path):
    """A worker lost in a stage is judged by the stage its row shows, and a person (or the
    fault drills) watching a run sees each stage as it starts: every stage change is written
    at once, in one transaction with the lines buffered before it, each keeping its own time."""
    recorder = RunRecorder(run, "host:1", tmp_path / "spill.jsonl")
    before = timezone.now()
    recorder.note("preparing")
    recorder.stage(RunStage.INIT)
    run.refresh_from_db()
    assert run.stage == RunStage.INIT and recorder.pending == 0
    recorder.note("initialised")
    time.sleep(0.02)
    recorder.stage(RunStage.PLAN)
    run.refresh_from_db()
    assert run.stage == RunStage.PLAN and recorder.pending == 0 and run.last_event_seq == 4
    events = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("message", "created_at"))
    assert [message for message, _ in events] == ["preparing", "Stage: init", "initialised", "Stage: plan"]
    times = [at for _, at in events]
    assert before <= times[0] <= times[1] <= times[2] < times[3] <= timezone.now()


def test_a_flush_of_lines_stages_and_progress_is_one_transaction_of_a_few_statements(run, tmp_path):
    """The event sink batches (issue 14): a stage change was its own transaction."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    recorder = RunRecorder(run, "host:1", tmp_path / "spill.jsonl")
    recorder.note("first")
    recorder._add({"stage": RunStage.INIT})
    for i in range(40):
        recorder.note(f"line {i}")
    recorder._add({"stage": RunStage.PLAN})
    recorder.progress(2, 7)
    with CaptureQueriesContext(connection) as queries:
        assert recorder.flush()
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) <= 5, statements  # lock the run, insert the events, update the run (+ BEGIN/COMMIT)
    run.refresh_from_db()
    assert run.stage == RunStage.PLAN and run.resources_done == 2 and run.last_event_seq == 43
    assert list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True)) == list(range(1, 44))


def test_the_recorder_writes_nothing_into_a_run_its_worker_no_longer_owns(run, tmp_path):
    recorder = RunRecorder(run, "host:1", tmp_path / "spill.jsonl")
    recorder.note("before")
    assert recorder.flush()
    Run.objects.filter(pk=run.pk).update(status=RunStatus.INTERRUPTED)  # reaped meanwhile
    recorder.note("after")
    recorder.progress(3, 7)
    assert recorder.flush() is False and recorder.lost
    run.refresh_from_db()
    assert list(RunEvent.objects.filter(run=run).values_list("message", flat=True)) == ["before"]
    assert run.resources_done == 0


# --- a cancel that came too late ------------------------------------------------------------


def test_a_cancel_recorded_just_before_success_is_explained_on_the_run(run):
    assert transitions.request_cancel(run.pk) == "requested"  # Terraform has finished already
    transitions.succeed_create(run, "host:1", outputs={}, endpoints=[])
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and "The cancel came too late" in run.explanation
    assert "Cancel arrived too late" in RunEvent.objects.filter(run=run).last().message
    assert transitions.request_cancel(run.pk) == "finished"


def test_the_recorder_stores_the_state_terraform_left_and_says_so(run, tmp_path):
    errored = tmp_path / "errored.tfstate"
    errored.write_bytes(document(serial=3, resources=7))
    recorder = RunRecorder(run, "host:1", tmp_path / "spill.jsonl")
    assert recorder.recover_state(errored) is True
    stored = StateVersion.objects.get(environment=run.environment)
    assert stored.resource_count == 7 and stored.recovered_from.endswith("errored.tfstate")
    # Older than what is stored now: refused, said on the run, and the file stays.
    errored.write_bytes(document(serial=1, resources=1))
    assert recorder.recover_state(errored) is False and errored.exists()
    recorder.flush()
    messages = list(RunEvent.objects.filter(run=run).values_list("message", flat=True))
    assert any("as a recovered version" in m for m in messages)
    assert any("could not be stored" in m and "older than the stored 3" in m for m in messages)
