"""Expiry in the browser UI, server-rendered: the list's "Expires" column, its "Expires
within" filter and its sort by expiry; the environment page's expiry card (when, the
countdown, the product's maximum, kept, blocked, expired), "Extend" and staff's "Keep"; and
the lifetimes in the Product admin. Environments are written as rows here; the expiry pass
itself is tested with the services (tests/portal).

Permission matrix (STYLE rule 18, `tests.world`): owner/member of Payments (owns `shop`),
stranger (Logistics only), staff, anonymous.
"""

import re
from datetime import timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from portal.models import Environment, EnvironmentStatus, Product, SandboxAccount
from tests.factories import make_department, make_endpoint, make_environment, make_run, make_superuser
from tests.world import world  # noqa: F401

MAX_HOURS = 240  # the product's maximum lifetime in these tests: 10 days


def text(response) -> str:
    return response.content.decode()


def as_user(client, world, who):
    if who is not None:
        client.force_login(getattr(world, who))
    return client


def expiring(world, name, expires_in: timedelta | None, **fields) -> Environment:
    """A ready environment of `shop` expiring `expires_in` from now (None: never)."""
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    return make_environment(world.product, name=name, expires_at=expires_at, **fields)


def with_max(world, hours=MAX_HOURS, default=None):
    Product.objects.filter(pk=world.product.pk).update(max_lifetime_hours=hours, default_lifetime_hours=default)


def cell(html: str, environment) -> str:
    """The "Expires" cell of an environment's row in the list."""
    row = html[html.index(f'href="/environments/{environment.pk}/"'):]
    row = row[: row.index("</tr>")]
    match = re.search(r'<td class="expiry-cell" data-expiry="(\w+)">(.*?)</td>', row, re.S)
    assert match, row
    return f"{match.group(1)}: {re.sub(r'<[^>]+>', '', match.group(2)).strip()}"


def names(client, query) -> list[str]:
    response = client.get("/", query)
    assert response.status_code == 200
    return [env.name for env in response.context["environments"]]


def page(client, environment, status=200) -> str:
    response = client.get(reverse("environment-detail", args=[environment.pk]))
    assert response.status_code == status
    return text(response)


def card(html: str) -> str:
    start = html.index('id="expiry"')
    return html[start: html.index("</section>", start)]


# --- the environment list ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_list_shows_when_each_environment_expires(client, world):
    days = expiring(world, "days", timedelta(days=3, minutes=5))
    minutes = expiring(world, "minutes", timedelta(minutes=39, seconds=30))
    hours = expiring(world, "hours", timedelta(hours=5, minutes=1))
    overdue = expiring(world, "overdue", timedelta(minutes=-5), expiry_blocked="it has run #9 (update) in progress")
    kept = expiring(world, "kept", timedelta(hours=1), kept=True)
    never = expiring(world, "never", None)
    gone = expiring(world, "gone", timedelta(hours=-1), status=EnvironmentStatus.DELETING, expired_at=timezone.now())
    html = text(as_user(client, world, "member").get("/"))
    assert ">Expires</a>" in html
    assert cell(html, days) == "expiring: in 3 days"
    assert cell(html, minutes) == "expiring: in 40 min"
    assert cell(html, hours) == "expiring: in 5 hours"
    assert 'class="expiry--warn"' in html  # under a day
    assert 'class="expiry--bad"' in html  # under an hour
    assert cell(html, overdue) == "expired: expired"
    assert 'title="Not destroyed: it has run #9 (update) in progress"' in html
    assert cell(html, kept) == "kept: kept"
    assert cell(html, never) == "never: never"
    assert cell(html, gone) == "expired: expired"


@pytest.mark.django_db
def test_the_list_filters_by_how_soon_environments_expire(client, world):
    expiring(world, "in-2h", timedelta(hours=2))
    expiring(world, "in-3d", timedelta(days=3))
    expiring(world, "in-10d", timedelta(days=10))
    expiring(world, "overdue", timedelta(minutes=-1))
    expiring(world, "never", None)
    expiring(world, "kept", timedelta(hours=2), kept=True)
    expiring(world, "destroying", timedelta(hours=-1), status=EnvironmentStatus.DELETING, expired_at=timezone.now())
    as_user(client, world, "owner")
    assert set(names(client, {"expires_within": "1d"})) == {"in-2h", "overdue"}
    assert set(names(client, {"expires_within": "7d"})) == {"in-2h", "in-3d", "overdue"}
    assert len(names(client, {"expires_within": ""})) == 7  # any time: no filter
    html = text(client.get("/", {"expires_within": "7d"}))
    assert '<option value="7d" selected>7 days</option>' in html and ">Clear</a>" in html
    # An unknown span is the form's error, not a 500.
    response = client.get("/", {"expires_within": "forever"})
    assert response.status_code == 200 and "expires_within: " in text(response)


@pytest.mark.django_db
def test_the_list_sorts_by_expiry_soonest_first_and_never_last(client, world):
    expiring(world, "never", None)
    expiring(world, "kept", timedelta(minutes=10), kept=True)
    expiring(world, "late", timedelta(days=9))
    expiring(world, "soon", timedelta(hours=1))
    expiring(world, "overdue", timedelta(minutes=-30))
    expiring(world, "middle", timedelta(days=2))
    as_user(client, world, "owner")
    assert names(client, {"sort": "expires"}) == ["overdue", "soon", "middle", "late", "never", "kept"]
    # The default order stays newest first.
    assert names(client, {}) == ["middle", "overdue", "soon", "late", "kept", "never"]
    html = text(client.get("/", {"sort": "expires"}))
    assert '<option value="expires" selected>Expires soonest</option>' in html
    assert 'aria-sort="ascending"' in html
    assert ">Clear</a>" not in html  # a sort is not a filter
    # The header switches the sort back off (and on again from the default order).
    assert 'href="?" title="Sort newest first">Expires</a>' in html
    assert 'href="?sort=expires" title="Sort by expiry, soonest first">Expires</a>' in text(client.get("/"))


@pytest.mark.django_db
def test_the_sort_and_the_filter_are_kept_by_the_pager(client, world):
    for number in range(27):
        expiring(world, f"env-{number:02d}", timedelta(hours=30 - number))  # the newest expires first
    as_user(client, world, "owner")
    first = client.get("/", {"sort": "expires", "expires_within": "7d"})
    assert first.context["page"].paginator.count == 27
    assert [env.name for env in first.context["environments"]][:2] == ["env-26", "env-25"]
    html = text(first)
    assert 'href="?sort=expires&amp;expires_within=7d&amp;page=2"' in html
    assert names(client, {"sort": "expires", "expires_within": "7d", "page": 2}) == ["env-01", "env-00"]
    # Switching the sort from the header starts again at page 1 and keeps the filter.
    second = text(client.get("/", {"sort": "expires", "expires_within": "7d", "page": 2}))
    assert 'href="?expires_within=7d" title="Sort newest first">Expires</a>' in second


@pytest.mark.django_db
def test_the_list_costs_the_same_queries_with_expiry_for_many_rows(client, world):
    as_user(client, world, "owner")
    spans = [timedelta(hours=3), timedelta(days=2), None, timedelta(minutes=-5)]

    def queries_for_page():
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/", {"sort": "expires", "expires_within": "7d"}).status_code == 200
            assert client.get("/", {"sort": "expires"}).status_code == 200
        return len(captured)

    def add(count):
        for number in range(count):
            env = expiring(world, None, spans[number % 4], kept=number % 5 == 0)
            make_endpoint(env)
            make_run(env)

    add(2)
    few = queries_for_page()
    add(15)
    many = queries_for_page()
    assert many == few, f"{few} queries for 2 rows but {many} for 17"


# --- the expiry card ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_card_says_when_it_expires_counts_down_and_how_far_it_can_be_extended(client, world):
    with_max(world)
    env = expiring(world, "dev", timedelta(days=2, hours=3, minutes=4, seconds=30))
    env.refresh_from_db()
    response = as_user(client, world, "member").get(reverse("environment-detail", args=[env.pk]))
    html = text(response)
    expiry = card(html)
    at = env.expires_at.astimezone(dt_timezone.utc)
    assert f'<time id="expiry-at" datetime="{at.isoformat()}">{at:%Y-%m-%d %H:%M} UTC</time>' in expiry
    assert re.search(r'id="expiry-countdown" role="timer" aria-label="Time left" data-seconds-left="18\d{4}">'
                     r"2d 03h 0[34]m \d\ds</p>", expiry)
    limit = (env.created_at + timedelta(hours=MAX_HOURS)).astimezone(dt_timezone.utc)
    assert f"Shop environments live at most {MAX_HOURS} hours: it can be extended until" in expiry
    assert f"{limit:%Y-%m-%d %H:%M} UTC</time>" in expiry
    assert 'id="extend-form"' in expiry and ">+1 day</button>" in expiry and ">+7 days</button>" in expiry
    assert 'type="datetime-local"' in expiry
    assert 'id="keep-form"' not in expiry  # keeping is for staff
    # The countdown's script carries the page's CSP nonce.
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
    assert f'<script nonce="{nonce}">\n(function () {{\n  "use strict";\n  var clock = document.getElementById("expiry-countdown");' in html


@pytest.mark.django_db
def test_an_environment_without_expiry_never_expires_and_has_no_countdown(client, world):
    env = expiring(world, "forever", None)
    html = page(as_user(client, world, "owner"), env)
    expiry = card(html)
    assert "It never expires." in expiry
    assert 'id="expiry-countdown"' not in expiry and 'id="extend-form"' not in expiry
    assert 'id="expiry-limit"' not in expiry  # no maximum either
    assert 'getElementById("expiry-countdown")' not in html


@pytest.mark.django_db
def test_a_kept_environment_shows_the_badge_and_no_extend(client, world):
    env = expiring(world, "pinned", timedelta(hours=5), kept=True)
    expiry = card(page(as_user(client, world, "owner"), env))
    assert 'id="expiry-kept"' in expiry and ">Kept by staff</span>" in expiry
    assert "It does not expire while staff keep it." in expiry
    assert 'id="extend-form"' not in expiry and 'id="expiry-countdown"' not in expiry


@pytest.mark.django_db
def test_an_expiry_that_could_not_destroy_it_is_shown_as_a_warning(client, world):
    reason = "it is rollback failed: its stored state needs a person before anything destroys it"
    env = expiring(world, "stuck", timedelta(minutes=-20), status=EnvironmentStatus.ROLLBACK_FAILED, expiry_blocked=reason)
    expiry = card(page(as_user(client, world, "owner"), env))
    assert 'class="alert alert--warn" role="alert" id="expiry-blocked"' in expiry
    assert f"Expiry did not destroy it:</strong> {escape(reason)}." in expiry
    assert "Expired at" in expiry and "expired</p>" in expiry  # the countdown at zero
    assert "next pass" not in expiry  # blocked: the warning says what happens instead


@pytest.mark.django_db
def test_an_expired_environment_says_when_expiry_queued_its_destroy(client, world):
    when = timezone.now() - timedelta(hours=2)
    env = expiring(world, "old", timedelta(hours=-2, minutes=-1), status=EnvironmentStatus.DELETED, expired_at=when)
    expiry = card(page(as_user(client, world, "owner"), env))
    assert f"Expired: expiry queued its destroy at <time datetime=\"{when.astimezone(dt_timezone.utc).isoformat()}\">" in expiry
    assert 'id="extend-form"' not in expiry


@pytest.mark.parametrize("who, offered", [("owner", True), ("member", True), ("staff", True), ("stranger", False)])
@pytest.mark.django_db
def test_extend_is_offered_to_those_who_may_change_the_environment(client, world, who, offered):
    env = expiring(world, "dev", timedelta(days=1))
    expiry = card(page(as_user(client, world, who), env))
    assert ('id="extend-form"' in expiry) is offered
    assert ("Only members of Payments (or staff) may extend it." in expiry) is not offered
    assert ('id="keep-form"' in expiry) is (who == "staff")


# --- extend --------------------------------------------------------------------------------------------


def extend(client, environment, **data):
    return client.post(reverse("environment-extend", args=[environment.pk]), data)


@pytest.mark.parametrize("who", ["owner", "member", "staff"])
@pytest.mark.django_db
def test_extend_by_a_day_moves_the_expiry_and_says_so(client, world, who):
    with_max(world)
    env = expiring(world, "dev", timedelta(hours=10))
    before = Environment.objects.get(pk=env.pk).expires_at
    response = extend(as_user(client, world, who), env, hours="24")
    assert response.status_code == 302 and response["Location"] == f"/environments/{env.pk}/"
    after = Environment.objects.get(pk=env.pk).expires_at
    assert after == before + timedelta(hours=24)  # from the expiry, which is later than now
    html = page(client, env)
    assert f"shop/dev now expires at {after.astimezone(dt_timezone.utc):%Y-%m-%d %H:%M} UTC." in html


@pytest.mark.django_db
def test_extend_until_a_time_sets_that_time_in_utc(client, world):
    with_max(world)
    env = expiring(world, "dev", timedelta(hours=10))
    target = (timezone.now() + timedelta(days=4)).astimezone(dt_timezone.utc).replace(second=0, microsecond=0)
    response = extend(as_user(client, world, "owner"), env, until=target.strftime("%Y-%m-%dT%H:%M"))
    assert response.status_code == 302
    assert Environment.objects.get(pk=env.pk).expires_at == target


@pytest.mark.django_db
def test_extend_beyond_the_products_maximum_is_refused_with_the_reason(client, world):
    with_max(world, hours=48)
    env = expiring(world, "dev", timedelta(hours=20))
    before = Environment.objects.get(pk=env.pk).expires_at
    response = extend(as_user(client, world, "owner"), env, hours="168")
    assert response.status_code == 400
    html = text(response)
    assert "Shop environments live at most 48 hours; shop/dev may be extended until" in html
    assert 'class="flash__item flash__item--error"' in html and 'id="expiry"' in html
    assert Environment.objects.get(pk=env.pk).expires_at == before


@pytest.mark.django_db
def test_extend_into_the_past_or_with_nothing_is_refused(client, world):
    env = expiring(world, "dev", timedelta(hours=20))
    as_user(client, world, "owner")
    past = (timezone.now() - timedelta(days=1)).astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M")
    response = extend(client, env, until=past)
    assert response.status_code == 400 and "until must be in the future." in text(response)
    assert f'value="{past}"' in text(response)  # what was typed stays in the field
    response = extend(client, env)
    assert response.status_code == 400 and "Give either hours or until." in text(response)
    response = extend(client, env, hours="5")  # not one of the buttons
    assert response.status_code == 400 and 'id="extend-errors"' in text(response)
    response = extend(client, env, until="next tuesday")
    assert response.status_code == 400 and "until: Enter a valid date/time." in text(response)


@pytest.mark.django_db
def test_a_stranger_may_not_extend(client, world):
    env = expiring(world, "dev", timedelta(hours=20))
    before = Environment.objects.get(pk=env.pk).expires_at
    response = extend(as_user(client, world, "stranger"), env, hours="24")
    assert response.status_code == 403
    assert "You may not extend environments of Shop" in text(response)
    assert Environment.objects.get(pk=env.pk).expires_at == before


@pytest.mark.django_db
def test_extending_an_environment_that_is_gone_is_a_conflict(client, world):
    env = expiring(world, "dev", timedelta(hours=-1), status=EnvironmentStatus.DELETING, expired_at=timezone.now())
    response = extend(as_user(client, world, "owner"), env, hours="24")
    assert response.status_code == 409 and "there is nothing to extend" in text(response)


@pytest.mark.django_db
def test_anonymous_and_get_are_not_extensions(client, world):
    env = expiring(world, "dev", timedelta(hours=20))
    response = extend(client, env, hours="24")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    as_user(client, world, "owner")
    assert client.get(reverse("environment-extend", args=[env.pk])).status_code == 405
    assert extend(client, Environment(pk=999999), hours="24").status_code == 404


# --- keep -----------------------------------------------------------------------------------------------


def keep(client, environment, kept):
    return client.post(reverse("environment-keep", args=[environment.pk]), {"kept": "1" if kept else "0"})


@pytest.mark.django_db
def test_staff_keep_an_environment_and_stop_keeping_it(client, world):
    env = expiring(world, "dev", timedelta(hours=20))
    as_user(client, world, "staff")
    response = keep(client, env, True)
    assert response.status_code == 302 and Environment.objects.get(pk=env.pk).kept
    html = page(client, env)
    assert "shop/dev is kept: it does not expire until staff stop keeping it." in html
    assert ">Stop keeping</button>" in card(html) and 'name="kept" value="0"' in card(html)
    assert keep(client, env, False).status_code == 302 and not Environment.objects.get(pk=env.pk).kept
    assert ">Keep</button>" in card(page(client, env))


@pytest.mark.django_db
def test_stopping_to_keep_an_overdue_environment_warns_that_expiry_will_destroy_it(client, world):
    env = expiring(world, "dev", timedelta(hours=-3), kept=True)
    as_user(client, world, "staff")
    assert "data-confirm=" in card(page(client, env))
    keep(client, env, False)
    assert "is destroyed at expiry&#x27;s next pass unless it is extended" in page(client, env)


@pytest.mark.parametrize("who", ["owner", "stranger"])
@pytest.mark.django_db
def test_only_staff_may_keep(client, world, who):
    env = expiring(world, "dev", timedelta(hours=20))
    response = keep(as_user(client, world, who), env, True)
    assert response.status_code == 403 and "Only staff may keep an environment from expiring." in text(response)
    assert not Environment.objects.get(pk=env.pk).kept


# --- the admin: lifetimes of a product's environments ------------------------------------------------------


def admin_form(client, url) -> dict:
    """The fields of an admin change form as it would be submitted."""
    html = text(client.get(url))
    data = {}
    for name, value in re.findall(r'<input type="(?:text|number|hidden)" name="([^"]+)"(?: value="([^"]*)")?', html):
        data[name] = value
    for name, body in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        selected = re.search(r'<option value="([^"]*)" selected', body)
        data[name] = selected.group(1) if selected else ""
    for name, body in re.findall(r'<textarea name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S):
        data[name] = body.strip()
    return data


@pytest.mark.django_db
def test_the_product_admin_edits_lifetimes_and_keeps_the_default_within_the_maximum(client):
    client.force_login(make_superuser())
    product = Product.objects.create(department=make_department("ops"), slug="tools", name="Tools")
    url = reverse("admin:portal_product_change", args=[product.pk])
    html = text(client.get(url))
    for field in ("default_lifetime_hours", "max_lifetime_hours", "drift_check_hours"):
        assert f'name="{field}"' in html
    assert "Lifetime of its environments" in html

    data = {**admin_form(client, url), "default_lifetime_hours": "72", "max_lifetime_hours": "48"}
    response = client.post(url, data)
    assert response.status_code == 200
    assert "The default lifetime (72 hours) is longer than the maximum (48 hours)." in text(response)
    assert Product.objects.get(pk=product.pk).default_lifetime_hours is None

    response = client.post(url, {**data, "default_lifetime_hours": "24"})
    assert response.status_code == 302
    saved = Product.objects.get(pk=product.pk)
    assert (saved.default_lifetime_hours, saved.max_lifetime_hours) == (24, 48)
    listing = text(client.get(reverse("admin:portal_product_changelist")))
    assert "column-default_lifetime_hours" in listing and "column-max_lifetime_hours" in listing


@pytest.mark.django_db
def test_the_product_model_accepts_one_lifetime_without_the_other():
    department = make_department("ops")
    Product(department=department, slug="a", name="A", default_lifetime_hours=24).full_clean()
    Product(department=department, slug="b", name="B", max_lifetime_hours=24).full_clean()
    Product(department=department, slug="c", name="C", default_lifetime_hours=24, max_lifetime_hours=24).full_clean()


@pytest.mark.django_db
def test_the_account_admin_edits_the_drift_schedule(client, world):
    client.force_login(make_superuser())
    html = text(client.get(reverse("admin:portal_sandboxaccount_change", args=[world.account.pk])))
    assert 'name="drift_check_hours"' in html
    url = reverse("admin:portal_sandboxaccount_change", args=[world.account.pk])
    response = client.post(url, {**admin_form(client, url), "drift_check_hours": "6"})
    assert response.status_code == 302, response.context["errors"] if response.context else response
    assert SandboxAccount.objects.get(pk=world.account.pk).drift_check_hours == 6
