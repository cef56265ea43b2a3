"""Notifications (issue 17): who is told what, and every delivery attempt.

A `NotificationTarget` is an Apprise URL (mailto://, slack://, msteams://, json:// ...) of a
department or of one user, with the events it wants. The URL is stored encrypted (Fernet, key
from NOTIFICATION_SECRET_KEY or derived from SECRET_KEY) and never shown back: people see its
scheme and host only. A `Notification` is one message to one target, delivered by its own
retried task; failures are recorded on it for staff, and never touch provisioning.
"""

from django.conf import settings
from django.db import models


class NotificationEvent(models.TextChoices):
    READY = "ready", "Environment ready"
    FAILED = "failed", "Create failed / rolled back"
    ROLLBACK_FAILED = "rollback_failed", "Rollback failed (needs attention)"
    EXPIRING = "expiring", "Expiring soon"
    EXPIRED = "expired", "Expired (destroy queued)"
    EXPIRY_BLOCKED = "expiry_blocked", "Expiry could not destroy it"
    DRIFTED = "drifted", "Drift detected"
    UPDATE_PLANNED = "update_planned", "Change planned (review and confirm)"


class NotificationTarget(models.Model):
    department = models.ForeignKey("portal.Department", null=True, blank=True, on_delete=models.CASCADE,
                                   related_name="notification_targets")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="notification_targets")
    name = models.CharField(max_length=100)
    url_encrypted = models.BinaryField(help_text="The Apprise URL, encrypted; never shown back.")
    url_hint = models.CharField(max_length=120, blank=True, help_text="Scheme and host, for people (no secrets).")
    events = models.JSONField(default=list, help_text="Event names it wants; empty = all.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(department__isnull=False, user__isnull=True) | models.Q(department__isnull=True, user__isnull=False),
                name="notification_target_has_one_owner",
            ),
        ]

    def __str__(self):
        return self.name


class Notification(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (gave up)"

    target = models.ForeignKey(NotificationTarget, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=20, choices=NotificationEvent.choices)
    environment = models.ForeignKey("portal.Environment", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="notifications")
    # What made it, e.g. "run:12" or "expiring:env:5:7200": one notification per target and key.
    dedupe_key = models.CharField(max_length=120)
    title = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [models.UniqueConstraint(fields=["target", "dedupe_key"], name="notification_once_per_target")]

    def __str__(self):
        return f"{self.event} -> {self.target}"
