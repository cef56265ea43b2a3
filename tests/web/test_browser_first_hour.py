"""A developer's first hour with the portal, in real Chromium against the real portal (gunicorn):
every mistake of a create request shown at once, the API tokens page's header pasted into a
client as it is, and the pages that must work on a phone (390 px wide, no sideways scrolling).

Screenshots go to tests/artifacts/screenshots/ (ignored by git).
"""

import json
import urllib.request

import pytest

from portal.models import Environment
from tests.factories import DEFAULT_PASSWORD, make_endpoint, make_environment, make_run
from tests.web.browser import Screenshots, browser, log_in, page, portal  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
LONG_VALUE = "x" * 300  # one word: nothing to break at but the CSS
LONG_REASON = "apply-failed:" + "module.service.aws_ecs_service.this[0]/" * 8 + " then the rollback " + "z" * 120


def field_error(page, control_id: str) -> str:
    """The error text shown in the same field box as the control `#control_id`."""
    box = page.locator(f".field:has(#{control_id})")
    assert box.count() == 1, f"no single field box around #{control_id}"
    error = box.locator(".error")
    return " ".join(error.all_inner_texts()) if error.count() and error.first.is_visible() else ""


def sideways_overflow(page) -> dict:
    """How far the page is wider than the window, and which elements stick out (for the message)."""
    return page.evaluate(
        """() => ({
            scrollWidth: document.documentElement.scrollWidth,
            innerWidth: window.innerWidth,
            culprits: [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
                .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '')),
        })"""
    )


def sideways_scroll(page, where: str) -> list[str]:
    """[] if the page is no wider than the window, else what is wrong (to report every page at once)."""
    width = sideways_overflow(page)
    return [] if width["scrollWidth"] == width["innerWidth"] else [f"{where} scrolls sideways at {PHONE['width']} px: {width}"]


def test_every_mistake_of_a_create_request_is_shown_at_once(page, portal):
    shot = Screenshots("first-hour-errors")
    url = portal["url"]
    log_in(page, url, "dev", DEFAULT_PASSWORD)
    page.get_by_role("link", name="New environment").first.click()
    page.wait_for_url(f"{url}/environments/new/")
    assert page.input_value("#id_pattern") == "demo-ecs"

    # Three mistakes in one request: the name, a parameter against its schema pattern, a tag line.
    page.get_by_label("Name", exact=True).fill("Bad_Name-")
    page.get_by_label("Application name").fill("Not A Label")
    page.get_by_label("Tags").fill("team=payments\njust-a-word")
    page.get_by_label("Note").fill("kept as typed")
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_load_state()
    page.wait_for_selector(".field--error")
    shot(page, "submitted")

    errors = {
        "name": field_error(page, "id_name"),
        "app_name": field_error(page, "id_param-app_name"),
        "tags": field_error(page, "id_param-tags"),
    }
    assert all(errors.values()), f"not every mistake is shown after one submit: {errors}"
    assert "key=value" in errors["tags"] and "line 2" in errors["tags"], errors
    assert "is not in the required form" in errors["app_name"], errors
    # What was typed is kept, so only the mistakes need fixing.
    assert page.input_value("#id_name") == "Bad_Name-"
    assert page.input_value("#id_param-app_name") == "Not A Label"
    assert page.input_value("#id_param-tags") == "team=payments\njust-a-word"
    assert page.input_value("#id_param-note") == "kept as typed"
    assert not Environment.objects.exists()
    assert page.external_requests == []


def test_the_tokens_page_header_works_verbatim_in_a_client(page, portal):
    shot = Screenshots("first-hour-token")
    url = portal["url"]
    log_in(page, url, "dev", DEFAULT_PASSWORD)
    page.get_by_role("link", name="API tokens").first.click()
    page.get_by_label("Name").fill("my laptop")
    page.get_by_role("button", name="Create token").click()
    key = page.input_value("#new-token-key")
    shown = page.inner_text("[data-auth-header]").strip()
    shot(page, "token-created")
    assert "<key>" in shown, shown

    # Exactly what the page says, with the key in its place.
    name, _, value = shown.replace("<key>", key).partition(":")
    request = urllib.request.Request(f"{url}/api/v1/environments/", headers={name.strip(): value.strip()})
    with urllib.request.urlopen(request, timeout=15) as response:
        assert response.status == 200
        body = json.loads(response.read())
    assert isinstance(body, (dict, list))
    assert page.external_requests == []


def test_pages_fit_a_phone_without_sideways_scrolling(page, portal):
    shot = Screenshots("first-hour-phone")
    url = portal["url"]
    env = make_environment(
        portal["product"],
        name="long-values",
        status="failed",
        status_reason=LONG_REASON,
        parameters={"app_name": "app", "note": LONG_VALUE, "container_image": "registry.example.test/" + "y" * 200 + ":latest", "tags": {"owner": "k" * 150}},
        outputs={"app_url": "not-a-link-" + "u" * 200, "database": {"endpoint": "d" * 180}},
    )
    make_endpoint(env, fqdn=f"app-{'e' * 40}-long-values.{env.account.dns_zone}")
    make_run(env, status="failed")
    page.set_viewport_size(PHONE)
    log_in(page, url, "dev", DEFAULT_PASSWORD)

    page.goto(f"{url}/environments/{env.pk}/")
    page.wait_for_selector("#parameters-title")
    shot(page, "detail")
    problems = sideways_scroll(page, "the environment page")

    page.goto(f"{url}/")
    page.wait_for_selector("tbody tr")
    shot(page, "list")
    problems += sideways_scroll(page, "the environment list")

    page.goto(f"{url}/environments/new/")
    page.wait_for_selector("#preflight >> text=Account Local sandbox")
    shot(page, "create")
    problems += sideways_scroll(page, "the create page")
    # On a phone the pre-flight check is read before reaching the button, not after it.
    preflight = page.locator("#preflight").bounding_box()
    button = page.get_by_role("button", name="Create environment").bounding_box()
    if not preflight["y"] < button["y"]:
        problems.append(f"the pre-flight panel (y={preflight['y']}) is below the Create button (y={button['y']})")
    assert problems == []
    assert page.external_requests == []
