"""Notifications (issue 17): who is told, idempotency, delivery with Apprise to a real SMTP
server and a real webhook receiver, retries of an unreachable target, and URLs never shown.

The end-to-end tests go through the real worker and Terraform (demo-ecs); the worker is
restarted with short retry delays for them (NOTIFICATION_RETRY_BASE_SECONDS) and back after.
"""

import json

import pytest
from django.db import transaction

from portal.models import DriftCheck, DriftStatus, Notification, NotificationEvent, NotificationTarget, Run, RunKind
from portal.services import drift, environments, notifications
from portal.services.errors import InvalidRequest, NotAllowed
from tests.factories import (
    make_account, make_department, make_environment, make_pool, make_product, make_run, make_user,
)
from tests.notifications_servers import SmtpReceiver, WebhookReceiver, closed_port, wait_for
from tests.waiting import wait_for_environment

SECRET = "hunter2-Very-Secret-Token"


@pytest.fixture
def sent(monkeypatch):
    """The notification ids handed to the broker, held here (unit tests run no worker)."""
    ids = []
    monkeypatch.setattr(notifications, "send", lambda notification_id: ids.append(notification_id) or True)
    return ids


def target(*, user=None, department=None, url="json://127.0.0.1:9/hook", events=(), by=None):
    by = by or make_user(is_staff=True)
    return notifications.create_target(user=user, department=department, name="t", url=url, events=events, by=by)


# --- targets -------------------------------------------------------------------------------------


def test_a_target_url_is_stored_encrypted_and_shown_as_scheme_and_host_only(db):
    owner = make_user("owner")
    url = f"mailto://bob:{SECRET}@mail.example.test?to=bob@example.test"
    made = target(user=owner, url=url, by=owner)
    stored = bytes(NotificationTarget.objects.get(pk=made.pk).url_encrypted)
    assert SECRET.encode() not in stored and b"bob" not in stored
    assert made.url_hint == "mailto://mail.example.test"
    assert notifications._decrypt_url(stored) == url
    # Where the "host" of an Apprise URL is a token, the hint hides it.
    assert notifications.url_hint("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ") == "slack://…"
    assert notifications.url_hint("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV") == "discord://…"


def test_a_secret_key_from_settings_encrypts_and_a_rotated_key_still_decrypts(db, settings):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.NOTIFICATION_SECRET_KEY = [old]
    token = notifications.encrypt_url("json://example.test/x")
    settings.NOTIFICATION_SECRET_KEY = [new, old]
    assert notifications._decrypt_url(token) == "json://example.test/x"
    settings.NOTIFICATION_SECRET_KEY = []
    with pytest.raises(Exception):
        notifications._decrypt_url(token)  # the SECRET_KEY-derived key is another key


def test_people_add_only_their_own_targets_and_staff_the_departments(db):
    owner, other, staff = make_user("owner"), make_user("other"), make_user("staff", is_staff=True)
    department = make_department("payments", members=[owner])
    with pytest.raises(NotAllowed):
        target(user=other, by=owner)
    with pytest.raises(NotAllowed):
        target(department=department, by=owner)
    assert target(department=department, by=staff).department == department
    with pytest.raises(InvalidRequest) as refused:
        target(user=owner, url=f"nosuchscheme://{SECRET}", by=owner)
    assert SECRET not in refused.value.message
    mine = target(user=owner, by=owner)
    with pytest.raises(NotAllowed):
        notifications.delete_target(by=other, target_id=mine.pk)
    notifications.delete_target(by=owner, target_id=mine.pk)
    assert not NotificationTarget.objects.filter(pk=mine.pk).exists()


# --- who is told, once ---------------------------------------------------------------------------


def test_notify_tells_the_department_and_the_requester_once_per_key(db, django_capture_on_commit_callbacks, sent):
    owner, stranger, changer = make_user("owner"), make_user("stranger"), make_user("changer")
    department = make_department("payments", members=[owner])
    env = make_environment(make_product(department), requested_by=owner)
    dept_target = target(department=department)
    own_target = target(user=owner)
    changer_target = target(user=changer)
    target(user=stranger)
    target(department=department, events=["drifted"])  # does not want "ready"
    NotificationTarget.objects.filter(pk=target(user=owner).pk).update(is_active=False)

    with django_capture_on_commit_callbacks(execute=True):
        ids = notifications.notify("ready", env, key="ready:run:1", title="ready", body="b", users=[changer])
    assert set(Notification.objects.filter(pk__in=ids).values_list("target_id", flat=True)) == {
        dept_target.pk, own_target.pk, changer_target.pk}
    assert sorted(sent) == sorted(ids)

    # The same transition again (a retry): nobody is told twice, nothing is sent again.
    with django_capture_on_commit_callbacks(execute=True):
        assert notifications.notify("ready", env, key="ready:run:1", title="ready", body="b", users=[changer]) == []
    assert Notification.objects.count() == 3 and len(sent) == 3


def test_notify_never_raises_into_the_transition(db, sent):
    with transaction.atomic():
        assert notifications.notify("ready", 987654, key="k", title="t", body="b") == []
        # The caller's transaction is still usable.
        make_user("still-works")


def test_a_retried_run_transition_notifies_once(db, django_capture_on_commit_callbacks, sent):
    owner = make_user("owner")
    department = make_department("payments", members=[owner])
    env = make_environment(make_product(department), requested_by=owner)
    target(user=owner)
    run = make_run(env, requested_by=owner)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            notifications.run_finished(run, NotificationEvent.READY)
    assert list(Notification.objects.values_list("event", "dedupe_key")) == [("ready", f"ready:run:{run.pk}")]
    assert len(sent) == 1
    # A rollback's outcome is keyed by the create it rolls back.
    rollback = make_run(env, kind=RunKind.ROLLBACK, rollback_of=run)
    notifications.run_finished(rollback, NotificationEvent.FAILED)
    assert Notification.objects.filter(event="failed", dedupe_key=f"failed:run:{run.pk}").count() == 1


def test_drift_is_told_when_an_environment_becomes_drifted_not_each_time_it_is_found(db, sent):
    owner = make_user("owner")
    env = make_environment(make_product(make_department("payments")), requested_by=owner)
    target(user=owner)

    def finish(status):
        check = DriftCheck.objects.create(environment=env, status=DriftCheck.Status.RUNNING)
        assert drift._finish(check, status, resources=[])
        return check

    first = finish(DriftCheck.Status.DRIFTED)
    finish(DriftCheck.Status.DRIFTED)
    assert list(Notification.objects.values_list("dedupe_key", flat=True)) == [f"drifted:check:{first.pk}"]
    finish(DriftCheck.Status.IN_SYNC)
    again = finish(DriftCheck.Status.DRIFTED)
    assert Notification.objects.filter(dedupe_key=f"drifted:check:{again.pk}").exists()
    env.refresh_from_db()
    assert env.drift_status == DriftStatus.DRIFTED


def test_pending_notifications_the_broker_lost_are_sent_again(db, settings, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    queued = []
    monkeypatch.setattr(notifications.current_app, "send_task", lambda name, args: queued.append(args[0]))
    env = make_environment()
    fresh = Notification.objects.create(target=target(user=make_user()), event="ready", environment=env,
                                        dedupe_key="a", title="t", body="b")
    lost = Notification.objects.create(target=fresh.target, event="ready", environment=env, dedupe_key="b",
                                       title="t", body="b")
    Notification.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(seconds=settings.NOTIFICATION_RESEND_SECONDS + 1))
    assert notifications.resend_pending() == [lost.pk]
    assert queued == [lost.pk]


def test_a_broker_that_refuses_leaves_the_row_pending(db, monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(notifications.current_app, "send_task", refuse)
    env = make_environment()
    row = Notification.objects.create(target=target(user=make_user()), event="ready", environment=env,
                                      dedupe_key="a", title="t", body="b")
    assert notifications.send(row.pk) is False
    assert Notification.objects.get(pk=row.pk).status == Notification.Status.PENDING


# --- delivering ----------------------------------------------------------------------------------


def test_an_unreachable_target_is_retried_recorded_redacted_and_given_up(db, settings):
    settings.NOTIFICATION_MAX_ATTEMPTS = 3
    settings.NOTIFICATION_TIMEOUT_SECONDS = 2
    port = closed_port()
    url = f"json://bob:{SECRET}@127.0.0.1:{port}/hooks/{SECRET}x"
    row = Notification.objects.create(target=target(user=make_user(), url=url), event="ready",
                                      environment=make_environment(), dedupe_key="k", title="t", body="b")
    for attempt in (1, 2):
        with pytest.raises(notifications.DeliveryFailed) as failed:
            notifications.deliver(row.pk)
        assert failed.value.attempts == attempt
        row.refresh_from_db()
        assert row.status == "pending" and row.attempts == attempt
    assert notifications.deliver(row.pk) == "failed"
    row.refresh_from_db()
    assert row.status == "failed" and row.attempts == 3
    assert "Connection" in row.last_error and "refused" in row.last_error, row.last_error
    assert SECRET not in row.last_error and "bob" not in row.last_error
    assert notifications.deliver(row.pk) == "skipped"  # a late retry of a finished row does nothing


def test_delivery_sends_a_real_email_and_a_real_webhook(db):
    with SmtpReceiver() as smtp, WebhookReceiver() as hook:
        env = make_environment()
        mail = Notification.objects.create(target=target(user=make_user(), url=smtp.url()), event="ready",
                                           environment=env, dedupe_key="k", title="shop/dev is ready", body="Created.")
        post = Notification.objects.create(target=target(user=make_user(), url=hook.url(credentials=f"bob:{SECRET}")),
                                           event="ready", environment=env, dedupe_key="k", title="shop/dev is ready",
                                           body="Created.")
        assert notifications.deliver(mail.pk) == "sent"
        assert notifications.deliver(post.pk) == "sent"
        assert smtp.messages[0]["Subject"] == "shop/dev is ready"
        assert smtp.envelopes[0][1] == ["dev@example.test"]
        assert hook.requests[0]["path"] == "/hooks/portal"
        assert hook.requests[0]["json"]["title"] == "shop/dev is ready"
        assert hook.requests[0]["json"]["message"] == "Created."
    assert Notification.objects.get(pk=mail.pk).sent_at is not None


# --- never shown back ----------------------------------------------------------------------------


def test_the_url_is_never_in_the_admin_the_api_or_the_page(db, client):
    from portal.services import notifications as service

    staff = make_user("staff", is_staff=True, is_superuser=True)
    owner = make_user("owner")
    client.force_login(staff)
    # The admin takes a plain URL and encrypts it.
    department = make_department("payments", members=[owner])
    url = f"json://bob:{SECRET}@hooks.example.test/in/{SECRET}"
    response = client.post("/admin/portal/notificationtarget/add/", {
        "name": "Payments chat", "department": department.pk, "user": "", "url": url, "is_active": "on",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    made = NotificationTarget.objects.get(name="Payments chat")
    assert made.url_hint == "json://hooks.example.test" and service._decrypt_url(made.url_encrypted) == url
    # Changing it without a URL keeps the URL.
    response = client.post(f"/admin/portal/notificationtarget/{made.pk}/change/", {
        "name": "Payments chat 2", "department": department.pk, "user": "", "url": "", "is_active": "on",
    })
    assert response.status_code == 302
    assert service._decrypt_url(NotificationTarget.objects.get(pk=made.pk).url_encrypted) == url
    env = make_environment(make_product(department), requested_by=owner)
    row = Notification.objects.create(target=made, event="ready", environment=env, dedupe_key="k", title="t", body="b",
                                      last_error="Attempt 1: A Connection error occurred")
    pages = [
        client.get("/admin/portal/notificationtarget/"),
        client.get(f"/admin/portal/notificationtarget/{made.pk}/change/"),
        client.get("/admin/portal/notification/"),
        client.get(f"/admin/portal/notification/{row.pk}/change/"),
        client.get("/api/v1/notifications/"),
        client.get(f"/api/v1/notifications/{row.pk}/"),
    ]
    for page in pages:
        assert page.status_code == 200, page
        text = page.content.decode()
        assert SECRET not in text and "bob" not in text
    assert "json://hooks.example.test" in pages[1].content.decode()
    listed = json.loads(pages[4].content)
    assert listed["results"][0]["target_hint"] == "json://hooks.example.test"
    # The API is staff's; the user's page shows their department's target by name and address.
    client.force_login(owner)
    assert client.get("/api/v1/notifications/").status_code == 403
    page = client.get("/notifications/")
    assert page.status_code == 200 and "json://hooks.example.test" in page.content.decode()
    assert SECRET not in page.content.decode()


def test_a_person_adds_and_removes_their_own_target_on_the_notifications_page(db, client):
    owner = make_user("owner")
    client.force_login(owner)
    response = client.post("/notifications/", {"name": "Mine", "url": f"json://me:{SECRET}@me.example.test/x",
                                               "events": ["ready", "failed"]})
    assert response.status_code == 302
    mine = NotificationTarget.objects.get(user=owner)
    assert mine.events == ["ready", "failed"] and mine.url_hint == "json://me.example.test"
    page = client.get("/notifications/").content.decode()
    assert "Mine" in page and SECRET not in page and 'value="json' not in page
    refused = client.post("/notifications/", {"name": "Bad", "url": f"nosuch://{SECRET}"})
    assert refused.status_code == 400 and SECRET not in refused.content.decode()
    assert client.post(f"/notifications/{mine.pk}/delete/").status_code == 302
    assert not NotificationTarget.objects.filter(user=owner).exists()


# --- through the real worker ---------------------------------------------------------------------

WORKER_SETTINGS = {
    "NOTIFICATION_RETRY_BASE_SECONDS": "0.3",
    "NOTIFICATION_RETRY_CAP_SECONDS": "1",
    "NOTIFICATION_MAX_ATTEMPTS": "3",
    "NOTIFICATION_TIMEOUT_SECONDS": "3",
}


@pytest.fixture(scope="module")
def notifying_worker(celery_worker, portal_env):
    """The session's worker, restarted with short notification retries; restored after."""
    saved = {name: portal_env.get(name) for name in WORKER_SETTINGS}
    portal_env.update(WORKER_SETTINGS)
    celery_worker.restart()
    try:
        yield celery_worker
    finally:
        for name, value in saved.items():
            if value is None:
                portal_env.pop(name, None)
            else:
                portal_env[name] = value
        celery_worker.restart()


@pytest.fixture
def world(web_server, notifying_worker):
    department = make_department("payments")
    account = make_account(department, dns_zone="sandbox.example.test", max_concurrent_runs=2)
    make_pool(account, "10.61.0.0/16", prefix_length=24)
    owner = make_user("owner", departments=[department])
    return {"department": department, "product": make_product(department, slug="shop"), "owner": owner}


def test_a_ready_environment_is_told_by_email_and_webhook_and_an_unreachable_target_does_not_hold_it_up(world):
    owner = world["owner"]
    with SmtpReceiver() as smtp, WebhookReceiver() as hook:
        target(user=owner, url=smtp.url(to="owner@example.test"), by=owner)
        target(department=world["department"], url=hook.url("/hooks/payments"))
        dead = target(department=world["department"], url=f"json://bob:{SECRET}@127.0.0.1:{closed_port()}/x/{SECRET}")
        run = environments.request_create(user=owner, product=world["product"], pattern_slug="demo-ecs", name="dev",
                                          parameters={})
        env = wait_for_environment(run.environment_id, {"ready"})

        mail = wait_for(lambda: smtp.messages, "the e-mail")[0]
        assert mail["Subject"] == "shop/dev is ready"
        assert smtp.envelopes[0][1] == ["owner@example.test"]
        assert f"/environments/{env.pk}/" in mail.get_payload(0).get_payload(decode=True).decode()
        posted = wait_for(lambda: hook.requests, "the webhook")[0]
        assert posted["path"] == "/hooks/payments" and posted["json"]["title"] == "shop/dev is ready"

        # The unreachable target was retried with backoff and given up, and recorded.
        failed = wait_for(lambda: Notification.objects.filter(target=dead, status="failed").first(),
                          "the unreachable target to be given up", timeout=60)
        assert failed.attempts == 3 and "refused" in failed.last_error and SECRET not in failed.last_error
        assert Notification.objects.filter(environment=env, status="sent").count() == 2

        # Telling it again (a retried transition) sends nothing new.
        notifications.run_finished(Run.objects.get(pk=run.pk), NotificationEvent.READY)
        assert Notification.objects.filter(environment=env).count() == 3
    assert len(smtp.messages) == 1 and len(hook.requests) == 1


def test_a_rolled_back_create_and_a_planned_change_are_told_once_each(world):
    from portal.services import changes

    owner, changer = world["owner"], make_user("changer", departments=[world["department"]])
    with WebhookReceiver() as hook:
        target(department=world["department"], url=hook.url("/dept"), events=["failed", "rollback_failed"])
        target(user=changer, url=hook.url("/changer"))
        run = environments.request_create(user=owner, product=world["product"], pattern_slug="demo-ecs", name="broken",
                                          parameters={"fail_on": "service"})
        wait_for_environment(run.environment_id, {"failed"})
        told = wait_for(lambda: hook.requests, "the failed notification")
        assert [r["path"] for r in told] == ["/dept"] and told[0]["json"]["title"] == "shop/broken could not be created"
        assert "rolled back" in told[0]["json"]["message"]

        ok = environments.request_create(user=owner, product=world["product"], pattern_slug="demo-ecs", name="dev",
                                         parameters={})
        env = wait_for_environment(ok.environment_id, {"ready"})
        plan = changes.request_change(user=changer, environment=env, parameters={"desired_count": 2})
        wait_for_environment(env.pk, {"ready"})
        planned = wait_for(lambda: [r for r in hook.requests if r["path"] == "/changer"], "the update_planned notification")
        assert planned[0]["json"]["title"] == "shop/dev: a change is planned - review and confirm it"
        assert Notification.objects.get(target__user=changer).dedupe_key == f"update_planned:run:{plan.plan_run_id}"
    assert len(hook.requests) == 2  # the department wanted neither "ready" nor "update_planned"
