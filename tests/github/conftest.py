"""Fixtures for the GitHub mirror tests: a fake GitHub (real HTTP, real PyGithub) and the
settings that point the portal at it."""

import pytest

from portal.services import github_mirror
from tests.github_fake import FakeGitHub

# Deliberately NOT shaped like a GitHub token: the generic token-shape redaction would hide a
# `ghp_...` value even if the mirror forgot to register its token; this one only the
# registration catches.
TOKEN = "portal-mirror-test-credential-7f3a9c2e41"
REPOSITORY = "acme/provisioning"
PORTAL_URL = "https://portal.example.test"


@pytest.fixture
def fake_github():
    with FakeGitHub(token=TOKEN, repository=REPOSITORY) as fake:
        yield fake


@pytest.fixture
def github_settings(settings, fake_github):
    """The mirror switched on against `fake_github`: short timeout, no write throttle."""
    settings.GITHUB_TOKEN = TOKEN
    settings.GITHUB_REPOSITORY = REPOSITORY
    settings.GITHUB_API_URL = fake_github.url
    settings.GITHUB_TIMEOUT = 1.0
    settings.GITHUB_SECONDS_BETWEEN_WRITES = 0
    settings.PORTAL_URL = PORTAL_URL
    github_mirror.reset_clients()
    yield settings
    github_mirror.reset_clients()
