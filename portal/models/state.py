"""Terraform state hosted by the portal (Terraform's `http` backend): versions and locks."""

from django.conf import settings
from django.db import models


class StateVersion(models.Model):
    """One state document Terraform POSTed. Every write is a new row; history is kept."""

    environment = models.ForeignKey("portal.Environment", on_delete=models.CASCADE, related_name="state_versions")
    run = models.ForeignKey("portal.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    serial = models.PositiveBigIntegerField()
    lineage = models.CharField(max_length=64)
    md5 = models.CharField(max_length=32)
    size = models.PositiveIntegerField()
    resource_count = models.PositiveIntegerField(default=0)
    content = models.BinaryField()
    # Empty for a write Terraform made through the http backend; otherwise where the portal
    # found the state it stored itself (Terraform's `errored.tfstate` after a failed write).
    recovered_from = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["environment", "-id"]
        get_latest_by = "id"

    def __str__(self):
        return f"state of {self.environment_id} serial {self.serial}"


class StateLock(models.Model):
    """The lock Terraform holds on an environment's state; one row at most per environment."""

    environment = models.OneToOneField("portal.Environment", on_delete=models.CASCADE, related_name="state_lock")
    lock_id = models.CharField(max_length=64)
    info = models.JSONField(help_text="The lock-info JSON Terraform sent.")
    run = models.ForeignKey("portal.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"lock {self.lock_id} on {self.environment_id}"


class StateLockRelease(models.Model):
    """Audit of a lock released by someone other than its holder (force-unlock, reaper)."""

    environment = models.ForeignKey("portal.Environment", on_delete=models.CASCADE, related_name="+")
    lock_id = models.CharField(max_length=64)
    info = models.JSONField()
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField()
    released_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-released_at"]
