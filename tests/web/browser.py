"""Browser-test helpers: Debian's Chromium driven by Playwright's sync API.

Never downloads a browser: Chromium must be at CHROMIUM_PATH (`apt-get install chromium`),
otherwise the tests are skipped with that instruction. Every request that leaves 127.0.0.1
is blocked and recorded, so a page that needs a CDN fails its test.

    from tests.web.browser import browser, page, portal, Screenshots  # noqa: F401 (fixtures)

`portal` (with the `web_server` and `celery_worker` of tests/conftest.py) is the world of the
browser tests: a department, its local sandbox account, a product and the developer "dev".
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_PATH = r"^/runs/\d+/live/$"  # the run page's poll (views.run_live)
SCREENSHOT_DIR = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


class Screenshots:
    """Numbered full-page screenshots of one test: `<dir>/<prefix>-NN-<step>.png`."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.count = 0
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOT_DIR.glob(f"{prefix}-*.png"):
            old.unlink()

    def __call__(self, page, step: str) -> Path:
        self.count += 1
        path = SCREENSHOT_DIR / f"{self.prefix}-{self.count:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module."""
    if not Path(CHROMIUM_PATH).exists():
        pytest.skip(f"no Chromium at {CHROMIUM_PATH}: apt-get install -y chromium (never download a browser)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread, so Django would refuse the
    # test's own ORM calls between browser steps; they are plain synchronous code. Only while
    # the browser is open.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            instance = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
            try:
                yield instance
            finally:
                instance.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    """A fresh context (no cookies) and page at 1280x900; `page.external_requests` lists
    every request that tried to leave the machine (they are aborted)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(15_000)
    external: list[str] = []

    def only_local(route):
        host = urlsplit(route.request.url).hostname or ""
        if host in LOCAL_HOSTS or route.request.url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    context.route(re.compile(r".*"), only_local)
    page = context.new_page()
    page.external_requests = external
    try:
        yield page
    finally:
        context.close()


def log_in(page, base_url: str, username: str, password: str) -> None:
    """Log in through the form, as a person would."""
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")


class NavigationCounter:
    """Counts main-frame navigations of a page (a reload or a redirect counts one)."""

    def __init__(self, page):
        self.page = page
        self.count = 0
        page.on("framenavigated", self._on_navigated)

    def _on_navigated(self, frame):
        if frame == self.page.main_frame:
            self.count += 1

    def reset(self, to: int = 0) -> None:
        self.count = to


class RequestRecorder:
    """Records requests (with their time) and responses whose path matches `pattern`."""

    def __init__(self, page, pattern: str):
        import time

        self._time = time.monotonic
        self.regex = re.compile(pattern)
        self.requests: list[tuple[float, str]] = []
        self.responses: list = []  # playwright Response objects; read bodies outside handlers
        page.on("request", self._on_request)
        page.on("response", self._on_response)

    def _on_request(self, request):
        if self.regex.search(urlsplit(request.url).path):
            self.requests.append((self._time(), request.url))

    def _on_response(self, response):
        if self.regex.search(urlsplit(response.url).path):
            self.responses.append(response)

    def count_between(self, start: float, end: float) -> int:
        return sum(1 for moment, _ in self.requests if start <= moment <= end)


@pytest.fixture
def portal(web_server, celery_worker):
    """A department with a local sandbox account, a product, and a developer who may use it."""
    from tests.factories import make_account, make_department, make_pool, make_product, make_user

    department = make_department("payments", name="Payments")
    account = make_account(department, name="Local sandbox", dns_zone="sandbox.example.test", max_concurrent_runs=2)
    make_pool(account, "10.70.0.0/16", prefix_length=24)
    product = make_product(department, slug="shop", name="Shop")
    make_user("dev", departments=[department])
    return {"url": str(web_server), "product": product, "account": account}


def request_environment(page, portal, *, name, delay, fail_on=""):
    """Fill the create form (the local demo pattern) up to, not including, its submit."""
    page.get_by_role("link", name="New environment").first.click()
    page.wait_for_url(f"{portal['url']}/environments/new/")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Delay (seconds)").fill(str(delay))
    page.get_by_label("Tags").fill("team=payments\nowner=dev")
    if fail_on:
        page.get_by_label("Fail on create of").select_option(fail_on)
