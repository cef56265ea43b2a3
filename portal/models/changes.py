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
