"""The GitHub audit trail of a request: one issue per create/delete request, code committed."""

from django.db import models


class GitHubMirror(models.Model):
    """What has been mirrored to GitHub for one request (a create or destroy run).

    The mirror task is idempotent: it compares the run's state with what is recorded here and
    does only the missing calls, so retries after a GitHub outage catch up without duplicates.
    """

    run = models.OneToOneField("portal.Run", on_delete=models.CASCADE, related_name="github_mirror")
    repository = models.CharField(max_length=200)
    issue_number = models.PositiveIntegerField(null=True, blank=True)
    issue_url = models.URLField(max_length=500, blank=True)
    commit_sha = models.CharField(max_length=40, blank=True)
    commit_url = models.URLField(max_length=500, blank=True)
    milestones = models.JSONField(default=list, blank=True, help_text="Milestones already commented.")
    closed = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "GitHub mirror"

    def __str__(self):
        return f"{self.repository}#{self.issue_number or '?'}"
