"""Expiry (issue 17) on a controllable clock: `run_expiry(now=...)` instead of sleeps.

Warnings go out exactly once each at their times; an extension beyond the product's maximum is
refused; an expired environment is destroyed through the delete path (real worker and
Terraform) and ends `deleted`; one with a run in progress, or `rollback_failed`, is left alone
and reported.
"""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from portal.models import Environment, Run, RunEvent, RunKind
from portal.services import environments, expiry
from portal.services.errors import Conflict, InvalidRequest, NotAllowed
from tests.factories import make_account, make_department, make_pool, make_product, make_user
from tests.waiting import wait_for_environment

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def people(settings):
    settings.EXPIRY_WARNINGS = "2d,2h,30m"
    department = make_department("payments")
    account = make_account(department, dns_zone="sandbox.example.test", max_concurrent_runs=2)
    make_pool(account, "10.63.0.0/16", prefix_length=24)
    product = make_product(department, slug="shop")
    product.default_lifetime_hours = 72
    product.max_lifetime_hours = 24 * 7
    product.save()
    return {"department": department, "account": account, "product": product,
            "owner": make_user("owner", departments=[department]), "stranger": make_user("stranger"),
            "staff": make_user("admin", is_staff=True)}


def env_row(people, name="dev", *, status="ready", expires_in=None, **fields):
    """An environment row as a create leaves it (no Terraform needed for the clock tests)."""
    now = timezone.now()
    return Environment.objects.create(
        product=people["product"], account=people["account"], name=name, pattern_slug="demo-ecs",
        pattern_version="1.1.0", status=status, requested_by=people["owner"],
        expires_at=None if expires_in is None else now + expires_in, **fields,
    )


def test_offsets_parse_and_nonsense_is_refused():
    assert expiry.parse_offsets("2d, 2h,30m") == (172800, 7200, 1800)
    with pytest.raises(ValueError, match="'2x' is not a duration"):
        expiry.parse_offsets("2x")


def test_each_warning_is_sent_exactly_once_at_its_time(people, monkeypatch):
    sent = []
    monkeypatch.setattr(expiry, "_notify", lambda event, env, **kw: sent.append((event, env.pk, kw["key"], kw["title"])))
    env = env_row(people, expires_in=timedelta(days=3))
    start = timezone.now()
    at = lambda delta: start + delta  # noqa: E731 - the clock

    assert expiry.run_expiry(now=at(timedelta(hours=1))) == {"warned": [], "expired": [], "blocked": []}
    expiry.run_expiry(now=at(timedelta(days=1, minutes=1)))  # 2 days before: the first warning
    expiry.run_expiry(now=at(timedelta(days=1, minutes=2)))  # again: nothing new
    expiry.run_expiry(now=at(timedelta(days=2, hours=22, minutes=1)))  # 2 h before
    expiry.run_expiry(now=at(timedelta(days=2, hours=23, minutes=31)))  # 30 min before
    expiry.run_expiry(now=at(timedelta(days=2, hours=23, minutes=45)))
    assert [(e, t) for e, _, _, t in sent] == [
        ("expiring", "shop/dev expires in 2 days"),
        ("expiring", "shop/dev expires in 2 hours"),
        ("expiring", "shop/dev expires in 30 minutes"),
    ]
    assert len({key for _, _, key, _ in sent}) == 3
    env.refresh_from_db()
    assert env.expiry_warnings_sent == [1800, 7200, 172800] and env.status == "ready"


def test_a_short_lifetime_skips_warnings_whose_time_had_passed(people, monkeypatch):
    sent = []
    monkeypatch.setattr(expiry, "_notify", lambda event, env, **kw: sent.append(kw["title"]))
    people["product"].default_lifetime_hours = 1  # the 2-day and 2-hour warnings are past at creation
    people["product"].save()
    run = environments.request_create(user=people["owner"], product=people["product"], pattern_slug="demo-ecs", name="dev")
    env = Environment.objects.get(pk=run.environment_id)
    assert env.expiry_warnings_sent == [7200, 172800]
    now = timezone.now()
    expiry.run_expiry(now=now)
    expiry.run_expiry(now=now + timedelta(minutes=5))
    assert sent == []
    expiry.run_expiry(now=env.expires_at - timedelta(minutes=29))
    expiry.run_expiry(now=env.expires_at - timedelta(minutes=20))
    assert sent == ["shop/dev expires in 30 minutes"]


def test_warnings_missed_while_beat_was_down_are_not_sent_late(people, monkeypatch):
    sent = []
    monkeypatch.setattr(expiry, "_notify", lambda event, env, **kw: sent.append(kw["title"]))
    env = env_row(people, expires_in=timedelta(days=3))
    expiry.run_expiry(now=env.expires_at - timedelta(minutes=10))  # beat was down for days
    assert sent == ["shop/dev expires in 30 minutes"]
    assert Environment.objects.get(pk=env.pk).expiry_warnings_sent == [1800, 7200, 172800]


def test_extend_within_the_maximum_and_beyond_it_refused(people, monkeypatch):
    monkeypatch.setattr(expiry, "_notify", lambda *a, **k: None)
    env = env_row(people, expires_in=timedelta(hours=1))
    expiry.run_expiry(now=timezone.now() + timedelta(minutes=31))  # the 30-minute warning went out
    env = expiry.extend(user=people["owner"], environment=env, hours=24)
    # A new expiry a day away: the 2-hour and 30-minute warnings will go out again, not the 2-day one.
    assert env.expires_at > timezone.now() + timedelta(hours=24) and env.expiry_warnings_sent == [172800]
    with pytest.raises(InvalidRequest, match="live at most 168 hours; shop/dev may be extended until"):
        expiry.extend(user=people["owner"], environment=env, hours=24 * 8)
    with pytest.raises(InvalidRequest, match="in the future"):
        expiry.extend(user=people["owner"], environment=env, until=timezone.now() - timedelta(hours=1))
    with pytest.raises(NotAllowed):
        expiry.extend(user=people["stranger"], environment=env, hours=1)
    before = Environment.objects.get(pk=env.pk).expires_at
    assert before == env.expires_at  # nothing the refusals asked for was written
    env.status = "deleted"
    env.save()
    with pytest.raises(Conflict, match="nothing to extend"):
        expiry.extend(user=people["owner"], environment=env, hours=1)


def test_kept_environments_never_expire_and_only_staff_keep(people, monkeypatch):
    monkeypatch.setattr(expiry, "_notify", lambda *a, **k: None)
    env = env_row(people, expires_in=timedelta(minutes=-5))
    with pytest.raises(NotAllowed):
        expiry.set_kept(user=people["owner"], environment=env, kept=True)
    expiry.set_kept(user=people["staff"], environment=env, kept=True)
    assert expiry.run_expiry() == {"warned": [], "expired": [], "blocked": []}
    assert not Run.objects.filter(environment=env).exists()


def test_an_expired_environment_with_a_run_or_rollback_failed_is_left_alone_and_reported(people, monkeypatch):
    told = []
    monkeypatch.setattr(expiry, "_notify", lambda event, env, **kw: told.append((event, env.pk)))
    busy = env_row(people, "busy", expires_in=timedelta(minutes=-1), status="provisioning")
    Run.objects.create(environment=busy, account=people["account"], kind=RunKind.CREATE, status="running",
                       pattern_slug="demo-ecs", pattern_version="1.1.0")
    broken = env_row(people, "broken", expires_in=timedelta(minutes=-1), status="rollback_failed")
    outcome = expiry.run_expiry()
    assert sorted(outcome["blocked"]) == sorted([busy.pk, broken.pk]) and outcome["expired"] == []
    assert Run.objects.filter(kind=RunKind.DESTROY).count() == 0
    busy.refresh_from_db()
    broken.refresh_from_db()
    assert "in progress" in busy.expiry_blocked and "needs a person" in broken.expiry_blocked
    expiry.run_expiry()  # reported once, not every pass
    assert sorted(told) == sorted([("expiry_blocked", busy.pk), ("expiry_blocked", broken.pk)])


@pytest.mark.slow
def test_an_expired_environment_is_destroyed_through_the_delete_path(people, web_server, celery_worker, monkeypatch):
    told = []
    monkeypatch.setattr(expiry, "_notify", lambda event, env, **kw: told.append(event))
    run = environments.request_create(user=people["owner"], product=people["product"], pattern_slug="demo-ecs", name="dev")
    env = wait_for_environment(run.environment_id, {"ready"})
    assert env.expires_at is not None and abs((env.expires_at - env.created_at) - timedelta(hours=72)) < timedelta(seconds=5)
    outcome = expiry.run_expiry(now=env.expires_at + timedelta(seconds=1))
    assert outcome["expired"] == [env.pk]
    env = wait_for_environment(env.pk, {"deleted"})
    destroy = Run.objects.get(environment=env, kind=RunKind.DESTROY)
    assert destroy.status == "succeeded" and destroy.requested_by is None and env.expired_at is not None
    assert RunEvent.objects.filter(run=destroy, message__startswith="Queued by expiry: shop/dev expired at").exists()
    assert told == ["expired"]
    assert expiry.run_expiry(now=env.expires_at + timedelta(minutes=5)) == {"warned": [], "expired": [], "blocked": []}


def test_the_cli_extends_and_keeps(people, capsys):
    env = env_row(people, expires_in=timedelta(hours=3))
    call_command("provision", "--user", "owner", "extend", str(env.pk), "--hours", "5")
    assert "shop/dev: expires at" in capsys.readouterr().out
    assert Environment.objects.get(pk=env.pk).expires_at > timezone.now() + timedelta(hours=7, minutes=59)
    call_command("provision", "--user", "admin", "keep", str(env.pk))
    assert Environment.objects.get(pk=env.pk).kept


def test_warnings_and_the_expiry_reach_the_departments_targets_once(people, runs_sent_to_workers):
    from portal.models import Notification
    from portal.services import notifications

    notifications.create_target(department=people["department"], name="team", url="json://127.0.0.1:9/hook",
                                events=["expiring", "expired"], by=people["staff"])
    env = env_row(people, expires_in=timedelta(hours=1, minutes=59))
    expiry.run_expiry(now=timezone.now())
    expiry.run_expiry(now=timezone.now() + timedelta(minutes=1))
    expiry.run_expiry(now=env.expires_at + timedelta(seconds=1))
    expiry.run_expiry(now=env.expires_at + timedelta(seconds=61))
    told = list(Notification.objects.order_by("pk").values_list("event", "title"))
    assert told == [("expiring", "shop/dev expires in 2 hours"), ("expired", "shop/dev expired and is being destroyed")]
