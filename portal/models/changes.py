"""Day two: a change to an environment (new parameters, or a new pattern version) is planned
first, reviewed by a person, and only then applied - exactly the saved plan that was shown."""

from django.conf import settings
from django.db import models


class ChangePlan(models.Model):
    """One proposed change of an environment and the plan Terraform made for it.

    The plan-only run (`plan_run`, kind `plan`) renders `code_snapshot` from `parameters` and
    `pattern_version`, runs `terraform plan -out`, and stores the saved plan file, the state
    serial it was made against and what it would do per resource. Confirming it queues the
    `update` run (`apply_run`) that applies that very file. The environment's own parameters,
    version and code change only when that apply succeeds (`portal.services.runs`).
    """

    environment = models.ForeignKey("portal.Environment", on_delete=models.CASCADE, related_name="change_plans")
    plan_run = models.OneToOneField("portal.Run", on_delete=models.CASCADE, related_name="change_plan")
    apply_run = models.OneToOneField(
        "portal.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="applied_change_plan"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # What the environment becomes if the change is applied.
    parameters = models.JSONField()
    pattern_version = models.CharField(max_length=30)
    pattern_version_before = models.CharField(max_length=30)
    code_snapshot = models.JSONField()
    # Written by the plan run once Terraform has planned.
    planned_at = models.DateTimeField(null=True, blank=True)
    plan_file = models.BinaryField(null=True, blank=True, help_text="terraform plan -out, applied as is on confirm")
    state_serial = models.IntegerField(null=True, blank=True, help_text="Serial of the stored state the plan was made against")
    resource_changes = models.JSONField(default=list, blank=True, help_text="Per resource: address, action, moved from")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set when the change was planned to undo what a drift check found ("plan to fix").
    fixes_drift = models.ForeignKey(
        "portal.DriftCheck", null=True, blank=True, on_delete=models.SET_NULL, related_name="fix_plans"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"change plan #{self.pk} of {self.environment_id}"

    @property
    def summary(self) -> dict | None:
        """add / change / replace / destroy / move counts: the plan run's own plan summary."""
        return self.plan_run.plan_summary

    @property
    def is_upgrade(self) -> bool:
        return self.pattern_version != self.pattern_version_before


class DriftCheck(models.Model):
    """One look at whether an environment's real resources still match its Terraform state:
    a refreshing `terraform plan` on a private copy of the stored state (nothing is locked or
    written), run by the drift worker outside the accounts' run slots."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        IN_SYNC = "in_sync", "In sync"
        DRIFTED = "drifted", "Drifted"
        FAILED = "failed", "Check failed"
        # The state moved while it ran (a user's run applied): its answer is about the past.
        SUPERSEDED = "superseded", "Superseded"

    environment = models.ForeignKey("portal.Environment", on_delete=models.CASCADE, related_name="drift_checks")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Empty for a scheduled check.",
    )
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    state_serial = models.IntegerField(null=True, blank=True, help_text="Serial of the state copy it checked")
    resources = models.JSONField(
        default=list, blank=True, help_text="Drifted resources: address, action, changed attributes before -> after"
    )
    explanation = models.TextField(blank=True)
    log = models.TextField(blank=True, help_text="Terraform's output, redacted and capped")

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [models.Index(fields=["environment", "-queued_at"]), models.Index(fields=["status"])]
        constraints = [
            # One check in flight per environment: the scheduler and a person asking cannot double it.
            models.UniqueConstraint(
                fields=["environment"], condition=models.Q(status__in=["queued", "running"]),
                name="one_open_drift_check_per_environment",
            ),
        ]

    def __str__(self):
        return f"drift check #{self.pk} of {self.environment_id}"

    @property
    def finished(self) -> bool:
        return self.status not in (self.Status.QUEUED, self.Status.RUNNING)


class PatternVersion(models.Model):
    """A pattern version some environment was built with or changed to. From then on the
    version is immutable: the catalog refuses to render it if its content (`digest`) differs."""

    slug = models.CharField(max_length=60)
    version = models.CharField(max_length=30)
    digest = models.CharField(max_length=64, help_text="sha256 of the version's files when first used")
    source = models.CharField(max_length=200, help_text="bundled, or the git tag it came from")
    first_used_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug", "version"]
        constraints = [models.UniqueConstraint(fields=["slug", "version"], name="pattern_version_unique")]

    def __str__(self):
        return f"{self.slug} {self.version}"
