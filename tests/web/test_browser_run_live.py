"""The live run page in real Chromium: server-rendered partials that htmx refreshes by polling
`/runs/<id>/live/?after=SEQ` (views.run_live), against the real portal (gunicorn), a real
Celery worker and real Terraform.

A run is watched from the queue to the end (About this run gains Started and Worker; the log
grows in order without duplicates; progress and status follow; the arrival's "queued" flash
goes; polling stops), and a failed apply is watched while its rollback takes over.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import Run, RunEvent
from portal.services.dispatch import dispatch_account
from tests.factories import DEFAULT_PASSWORD, make_environment, make_run
from tests.web.browser import (  # noqa: F401 (fixtures)
    LIVE_PATH,
    NavigationCounter,
    RequestRecorder,
    Screenshots,
    browser,
    log_in,
    page,
    portal,
    request_environment,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FINISHED = 180_000  # ms: a create with a few seconds of apply, on a busy machine


def about(page) -> dict[str, str]:
    """The "About this run" panel as {term: value}."""
    return page.eval_on_selector(
        "#run-about dl", "dl => Object.fromEntries([...dl.querySelectorAll('div')].map(d => [d.querySelector('dt').textContent, d.querySelector('dd').textContent]))"
    )


def shown_seqs(page) -> list[int]:
    return [int(seq) for seq in page.eval_on_selector_all("#run-log .log-line[data-seq]", "lines => lines.map(l => l.dataset.seq)")]


def settled_polls(page, recorder, *, quiet_ms=2_500) -> int:
    """The number of polls once the page stopped polling (none for `quiet_ms`)."""
    settled = len(recorder.requests)
    page.wait_for_timeout(quiet_ms)
    assert len(recorder.requests) == settled, "the page kept polling a finished run"
    return settled


def test_a_run_watched_from_the_queue_to_the_end(page, portal):
    shot = Screenshots("run-live")
    url, account = portal["url"], portal["account"]
    # One slot, taken: the new run waits in the queue while the page loads.
    account.max_concurrent_runs = 1
    account.save(update_fields=["max_concurrent_runs"])
    blocker = make_run(
        make_environment(portal["product"], name="blocker", status="provisioning"),
        status="running", stage="apply", started_at=timezone.now(), worker="elsewhere:1",
        lease_expires_at=timezone.now() + timedelta(minutes=10),
    )
    log_in(page, url, "dev", DEFAULT_PASSWORD)
    request_environment(page, portal, name="live-demo", delay=6)
    recorder = RequestRecorder(page, LIVE_PATH)
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_url(f"{url}/runs/*/")
    run = Run.objects.get(environment__name="live-demo")
    navigations = NavigationCounter(page)
    navigations.reset(1)

    assert page.locator('#run-status [data-status="queued"]').is_visible()
    assert f"run #{run.pk} is queued" in page.inner_text("#flash")
    assert "Started" not in about(page) and "Worker" not in about(page)
    assert "Position 1 in the queue" in page.inner_text("#run-progress-box")
    shot(page, "queued")

    # The slot frees: the run starts, and the page follows without a reload.
    Run.objects.filter(pk=blocker.pk).update(status="succeeded", finished_at=timezone.now(), lease_expires_at=None)
    dispatch_account(account.pk)
    page.wait_for_selector('#run-status [data-status="running"]', timeout=FINISHED)
    page.wait_for_selector("#run-about dt:text-is('Worker')", timeout=FINISHED)
    run.refresh_from_db()
    facts = about(page)
    assert facts["Started"] == timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M:%S")
    assert facts["Worker"] == run.worker and run.worker
    assert "Position 1 in the queue" not in page.inner_text("#run-progress-box")
    # The worker writes its first lines with its next flush (within half a second, issue 14):
    # the log fills in on a following poll, without a reload.
    page.wait_for_selector("#run-log .log-line[data-seq]", timeout=FINISHED)
    assert page.locator(".log-empty").is_hidden()

    page.wait_for_function(
        "() => { const p = document.querySelector('#run-progress'); return p.hasAttribute('value') && p.value > 0; }", timeout=FINISHED
    )
    assert "resources (" in page.inner_text("#progress-text")
    assert page.locator('.stage--current[data-step="apply"]').count() == 1
    shot(page, "applying")

    page.wait_for_selector('#run-status [data-status="succeeded"]', timeout=FINISHED)
    settled = settled_polls(page, recorder)
    assert recorder.responses[-1].status == 286  # the server said stop; nothing asked since

    # Every line once, in order, as the database has them; nothing was reloaded.
    seqs = shown_seqs(page)
    assert seqs == sorted(set(seqs)) and seqs == list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert "Apply complete! Resources: 7 added" in page.inner_text("#run-log")
    assert page.locator(".stage--done").count() == 7 and page.inner_text("#run-stage") == "Finished"
    assert "7 of 7 resources (100%)" in page.inner_text("#progress-text")
    assert about(page)["Finished"] and page.locator("#run-actions details").count() == 0
    assert page.locator("#run-endpoints").is_visible()
    # The arrival's flash ("run #N is queued") is gone once the run has ended.
    assert page.locator("#flash").is_hidden() and "is queued" not in page.inner_text("main")
    assert navigations.count == 1
    shot(page, "finished")
    print(f"\n{settled} polls for a run of {len(seqs)} lines")


def test_a_failed_apply_shows_the_rollback_taking_over_live(page, portal):
    shot = Screenshots("rollback")
    url = portal["url"]
    log_in(page, url, "dev", DEFAULT_PASSWORD)
    request_environment(page, portal, name="drill", delay=2, fail_on="service")
    shot(page, "create-form-drill")
    recorder = RequestRecorder(page, LIVE_PATH)
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_url(f"{url}/runs/*/")
    create = Run.objects.get(environment__name="drill", kind="create")
    navigations = NavigationCounter(page)
    navigations.reset(1)

    page.wait_for_selector("#run-rollback:not([hidden])", timeout=FINISHED)
    shot(page, "rollback-running")
    # The create has failed, but its page goes on polling while the rollback runs.
    page.wait_for_selector('#run-status [data-status="failed"]')
    polls_when_failed = len(recorder.requests)
    page.wait_for_selector('#run-rollback-status [data-status="succeeded"]', timeout=FINISHED)
    page.wait_for_selector('#run-environment-status [data-status="failed"]')
    if len(recorder.requests) == polls_when_failed:
        # A rollback faster than a poll interval: the poll that brought the create's failure
        # brought the rollback's end too, so it was the last one, and it said so.
        last = recorder.responses[-1]
        assert last.status == 286 and 'data-status="succeeded"' in last.text()
    else:
        assert len(recorder.requests) > polls_when_failed  # it went on polling while the rollback ran
    settled_polls(page, recorder)
    assert recorder.responses[-1].status == 286
    rollback = Run.objects.get(rollback_of=create)
    assert page.get_by_role("link", name=f"#{rollback.pk}").get_attribute("href") == f"/runs/{rollback.pk}/"
    assert page.locator('#run-status [data-status="failed"]').is_visible()
    assert page.locator('.stage--failed[data-step="apply"]').count() == 1
    assert "fail_on=service" in page.inner_text("#run-explanation-text")
    assert "rolled back" in page.inner_text("#run-environment-reason")
    assert f"Apply failed; rollback run #{rollback.pk}" in page.inner_text("#run-log")
    assert navigations.count == 1
    shot(page, "create-failed-rolled-back")

    page.get_by_role("link", name=f"#{rollback.pk}").click()
    page.wait_for_url(f"{url}/runs/{rollback.pk}/")
    assert page.get_by_role("link", name=f"create run #{create.pk}").is_visible()
    assert page.locator(".stage--done").count() == 4
    shot(page, "rollback-run")

    page.get_by_role("link", name="shop/drill").first.click()
    page.wait_for_selector(".pagehead [data-status='failed']")
    assert page.get_by_role("link", name=f"rolled back by #{rollback.pk}").is_visible()
    shot(page, "environment-failed")

    # A narrow screen: the same run page stays usable.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{url}/runs/{create.pk}/")
    shot(page, "run-page-mobile")
    assert page.external_requests == []
