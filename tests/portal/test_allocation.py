"""CIDR allocation under concurrency: distinct, non-overlapping, released on delete."""

import ipaddress
import threading

import pytest
from django.db import connection

from portal.models import CidrAllocation, Environment
from portal.services import environments
from portal.services.errors import Conflict
from tests.factories import make_account, make_department, make_pool, make_product, make_user


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_get_twenty_distinct_networks(monkeypatch):
    # Dispatch is recorded, not sent: a worker started by another test would otherwise pick the
    # run up and still be running Terraform for it when this test's tables are flushed.
    sent = []
    monkeypatch.setattr("portal.services.dispatch._send", sent.extend)
    department = make_department("payments")
    account = make_account(department, max_concurrent_runs=1)
    make_pool(account, "10.40.0.0/20", prefix_length=24)  # 16 blocks
    make_pool(account, "10.41.0.0/22", prefix_length=24)  # 4 more: exactly 20
    product = make_product(department, slug="shop")
    owner = make_user("owner", departments=[department])
    barrier = threading.Barrier(22)
    results = []

    def request(i):
        try:
            barrier.wait()
            run = environments.request_create(user=owner, product=product, pattern_slug="demo-ecs", name=f"env-{i}")
            results.append(run.environment.cidr)
        except Exception as exc:  # collected and asserted below
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(i,)) for i in range(21)]
    for thread in threads:
        thread.start()
    barrier.wait()
    for thread in threads:
        thread.join()

    networks = [ipaddress.IPv4Network(r) for r in results if isinstance(r, str)]
    refusals = [r for r in results if isinstance(r, Conflict)]
    assert len(networks) == 20 and len(set(networks)) == 20
    assert all(not a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1:])
    assert len(refusals) == 1 and "No free network left" in refusals[0].message
    assert Environment.objects.count() == 20  # the refused request left nothing behind
    assert CidrAllocation.objects.filter(released_at__isnull=True).count() == 20
    assert len(sent) == 1  # the account runs one at a time: the other nineteen wait in its queue
