"""Admins can force-unlock a stuck Terraform state lock; it is recorded with who and why."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from portal.models import StateLock, StateLockRelease
from tests.factories import make_state_lock, make_superuser

pytestmark = pytest.mark.django_db


def test_force_unlock_asks_for_a_reason_then_records_it(client):
    admin_user = make_superuser("root")
    client.force_login(admin_user)
    lock = make_state_lock()
    url = "/admin/portal/statelock/"
    asked = client.post(url, {"action": "force_unlock_action", ACTION_CHECKBOX_NAME: [lock.pk]})
    assert asked.status_code == 200 and b"Force-unlock" in asked.content
    assert StateLock.objects.count() == 1
    done = client.post(url, {"action": "force_unlock_action", ACTION_CHECKBOX_NAME: [lock.pk], "reason": "host died"})
    assert done.status_code == 302
    assert StateLock.objects.count() == 0
    release = StateLockRelease.objects.get()
    assert (release.released_by, release.reason, release.lock_id) == (admin_user, "host died", lock.lock_id)
