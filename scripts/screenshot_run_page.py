#!/usr/bin/env python3
"""Take the README's screenshot of the run page (docs/run-page.png) from a running portal.

    make run                                   # in one terminal
    .venv/bin/python scripts/screenshot_run_page.py [--url http://127.0.0.1:8000]

Signs in as `developer` with the password seed_demo generated (var/demo-logins.txt, or
DEMO_DEVELOPER_PASSWORD), requests a `demo-ecs` environment through the Create form, waits
for the run to end and saves the page, in Debian's Chromium (never a downloaded browser).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def developer_password() -> str:
    """DEMO_DEVELOPER_PASSWORD, else the one seed_demo generated and kept (`kept_logins`)."""
    if os.environ.get("DEMO_DEVELOPER_PASSWORD"):
        return os.environ["DEMO_DEVELOPER_PASSWORD"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("DEBUG", "1")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from portal.management.commands.seed_demo import DEVELOPER_USERNAME, kept_logins

    password = kept_logins().get(DEVELOPER_USERNAME)
    if not password:
        raise SystemExit("no password for developer: set DEMO_DEVELOPER_PASSWORD")
    return password


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", default=str(ROOT / "docs" / "run-page.png"))
    parser.add_argument("--name", default=f"screenshot-{int(time.time()) % 100000}")
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{options.url}/login/")
        page.get_by_label("Username").fill("developer")
        page.get_by_label("Password").fill(developer_password())
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{options.url}/")
        page.goto(f"{options.url}/environments/new/?pattern=demo-ecs")
        page.get_by_label("Name", exact=True).fill(options.name)
        page.get_by_label("Delay (seconds)").fill("6")
        page.get_by_label("Tags").fill("team=payments\nowner=developer")
        page.get_by_role("button", name="Create").click()
        page.wait_for_url("**/runs/*/")
        page.wait_for_selector("#run-about dt:text-is('Finished')", timeout=180_000)
        time.sleep(1.5)  # the last out-of-band swaps
        page.screenshot(path=options.out, full_page=True)
        print(f"saved {options.out} ({page.url})")
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
