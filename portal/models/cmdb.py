"""CMDB records: departments, sandbox accounts, CIDR pools, products, environments, endpoints.

Only field-level validation lives here (`clean`); rules that span rows (pool overlap,
allocation) live in `portal.services`.
"""

import ipaddress

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

slug_validator = RegexValidator(
    r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$",
    "Use 1-40 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen.",
)
# No credentials, query or fragment: the URL is written into portal_provider.tf, which is
# stored with the environment and committed to the provisioning repository.
endpoint_url_validator = RegexValidator(
    r"^(https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?)?$",  # or empty: real AWS
    "Give the endpoint as http(s)://host[:port][/path], without credentials, query or fragment.",
)
account_id_validator = RegexValidator(r"^\d{12}$", "An AWS account id is exactly 12 digits.")

# Environment networks smaller than /28 cannot hold two AWS subnets; larger than /16 is
# more than a sandbox VPC can use.
MIN_PREFIX_LENGTH = 16
MAX_PREFIX_LENGTH = 28


class Department(models.Model):
    """A unit that owns products and sandbox accounts; its members may request environments."""

    slug = models.SlugField(max_length=40, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="departments")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class SandboxAccount(models.Model):
    """An AWS account (or the offline `local` target) where a department's environments run."""

    class Kind(models.TextChoices):
        AWS = "aws", "AWS"
        LOCAL = "local", "Local (offline demo/test target)"

    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="accounts")
    name = models.CharField(max_length=100, unique=True)
    account_id = models.CharField(
        "AWS account id", max_length=12, unique=True, validators=[account_id_validator]
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.AWS)
    region = models.CharField(max_length=30, default="eu-west-1")
    role_arn = models.CharField(
        "role to assume",
        max_length=2048,
        blank=True,
        help_text="arn:aws:iam::<account>:role/<name>; required for AWS accounts.",
    )
    external_id = models.CharField(max_length=1224, blank=True)
    endpoint_url = models.CharField(
        "AWS-compatible endpoint",
        max_length=500,
        blank=True,
        validators=[endpoint_url_validator],
        help_text=(
            "Empty for real AWS. Otherwise a simulated AWS (moto, LocalStack, a proxy) that "
            "Terraform's provider and the portal's checks talk to instead, e.g. http://127.0.0.1:5000"
        ),
    )
    dns_zone = models.CharField(
        "DNS zone", max_length=253, help_text="Zone the environments' FQDNs live under, e.g. sandbox.example.com"
    )
    max_concurrent_runs = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Runs beyond this wait in a FIFO queue.",
    )
    is_active = models.BooleanField(default=True, help_text="Inactive accounts take no new environments.")
    drift_check_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Check this account's ready environments for drift this many hours apart (0 = never; "
            "empty = DRIFT_CHECK_HOURS for AWS accounts, never for local ones)."
        ),
    )
    shared_infrastructure = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "Pre-existing shared components patterns build on, e.g. "
            '{"ecs_cluster_arn": ..., "alb_listener_arn": ..., "alb_dns_name": ..., "alb_zone_id": ..., '
            '"vpc_id": ..., "private_subnet_ids": [...], "alb_security_group_id": ...}'
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(account_id__regex=r"^[0-9]{12}$"), name="account_id_is_12_digits"
            ),
            models.CheckConstraint(
                condition=Q(max_concurrent_runs__gte=1), name="account_runs_at_least_one"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["aws", "local"]), name="account_kind_known"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.account_id})"

    @property
    def simulated(self) -> bool:
        """An AWS account whose API is not AWS's own (see endpoint_url)."""
        return bool(self.endpoint_url)

    def clean(self):
        if self.endpoint_url and self.kind != self.Kind.AWS:
            raise ValidationError({"endpoint_url": "Only an AWS account talks to an AWS endpoint."})
        if self.kind == self.Kind.AWS and not self.role_arn:
            raise ValidationError({"role_arn": "An AWS account needs the role the portal assumes."})
        if self.role_arn and self.account_id and f"::{self.account_id}:" not in self.role_arn:
            raise ValidationError({"role_arn": "The role must belong to this account."})


def parse_network(value: str) -> ipaddress.IPv4Network:
    """Parse an IPv4 CIDR strictly (host bits must be zero) with a human error."""
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{value!r} is not a valid IPv4 network in CIDR notation ({exc}).") from None


class CidrPool(models.Model):
    """A range of an account from which each environment gets a block of `prefix_length`."""

    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="cidr_pools")
    cidr = models.CharField("CIDR", max_length=18, help_text="e.g. 10.20.0.0/16")
    prefix_length = models.PositiveSmallIntegerField(
        default=24,
        validators=[MinValueValidator(MIN_PREFIX_LENGTH), MaxValueValidator(MAX_PREFIX_LENGTH)],
        help_text="Size of the block handed to each environment, e.g. 24 for a /24.",
    )
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["account", "cidr"]
        verbose_name = "CIDR pool"
        constraints = [
            models.UniqueConstraint(fields=["account", "cidr"], name="pool_cidr_unique_per_account"),
            models.CheckConstraint(
                condition=Q(prefix_length__gte=MIN_PREFIX_LENGTH, prefix_length__lte=MAX_PREFIX_LENGTH),
                name="pool_prefix_length_in_range",
            ),
        ]

    def __str__(self):
        return f"{self.cidr} -> /{self.prefix_length}"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    def clean(self):
        errors = {}
        network = None
        try:
            network = parse_network(self.cidr)
        except ValidationError as exc:
            errors["cidr"] = exc.messages
        if network is not None and self.prefix_length is not None:
            if self.prefix_length < network.prefixlen:
                errors["prefix_length"] = (
                    f"A /{self.prefix_length} block does not fit in the pool {network} "
                    f"(choose /{network.prefixlen} or smaller blocks)."
                )
        if network is not None and self.account_id:
            for other in CidrPool.objects.filter(account_id=self.account_id).exclude(pk=self.pk):
                if network.overlaps(other.network):
                    errors["cidr"] = f"{network} overlaps the pool {other.cidr} of this account."
                    break
        if errors:
            raise ValidationError(errors)


class Product(models.Model):
    """An application a department builds; environments are requested for a product."""

    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="products")
    slug = models.SlugField(max_length=40, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    drift_check_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Check this product's ready environments for drift this many hours apart (0 = never; "
            "empty = the account's setting)."
        ),
    )

    default_lifetime_hours = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="New environments expire this many hours after they are requested (empty = never).",
    )
    max_lifetime_hours = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Nobody may extend an environment beyond this many hours after its creation (empty = no limit).",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        """The default lifetime fits in the maximum: otherwise every new environment would
        start beyond what `expiry.extend` allows, and could never be extended."""
        default, maximum = self.default_lifetime_hours, self.max_lifetime_hours
        if default is not None and maximum is not None and default > maximum:
            raise ValidationError({
                "default_lifetime_hours": f"The default lifetime ({default} hours) is longer than the maximum ({maximum} hours).",
            })


class DriftStatus(models.TextChoices):
    """What the latest drift check of an environment found."""

    UNKNOWN = "unknown", "Not checked"
    IN_SYNC = "in_sync", "In sync"
    DRIFTED = "drifted", "Drifted"
    FAILED = "failed", "Check failed"


class EnvironmentStatus(models.TextChoices):
    """Where an environment is in its life. Transitions live in `portal.services.runs`."""

    PROVISIONING = "provisioning", "Provisioning"      # create run queued or running
    READY = "ready", "Ready"                            # applied, endpoints written
    FAILED = "failed", "Failed (rolled back)"           # apply failed, rollback destroyed everything
    ROLLBACK_FAILED = "rollback_failed", "Rollback failed"  # needs attention: state kept
    INCOMPLETE = "incomplete", "Incomplete"             # create cancelled or worker lost: delete or retry
    DELETING = "deleting", "Deleting"                   # destroy run queued or running
    DELETE_FAILED = "delete_failed", "Delete failed"    # destroy failed: state kept, retry delete
    DELETED = "deleted", "Deleted"                      # destroyed; row kept for audit
    PLANNING = "planning", "Planning a change"          # plan-only run of a change queued or running
    UPDATING = "updating", "Updating"                   # a confirmed change plan is being applied
    UPDATE_FAILED = "update_failed", "Update failed"    # a change's apply failed: nothing destroyed, state kept


# Environment statuses in named groups (code names these, never a literal set):
# BUSY: a run of the environment is queued or running.
ENVIRONMENT_BUSY = frozenset(
    {EnvironmentStatus.PROVISIONING, EnvironmentStatus.DELETING, EnvironmentStatus.PLANNING, EnvironmentStatus.UPDATING}
)
# CHANGEABLE: a change (new parameters or pattern version) may be planned; its apply never destroys.
ENVIRONMENT_CHANGEABLE = frozenset({EnvironmentStatus.READY, EnvironmentStatus.UPDATE_FAILED})
# NEEDS_ATTENTION: something may exist that nobody wants; the stored state says what.
ENVIRONMENT_NEEDS_ATTENTION = frozenset(
    {EnvironmentStatus.INCOMPLETE, EnvironmentStatus.ROLLBACK_FAILED, EnvironmentStatus.DELETE_FAILED}
)
# DELETABLE: a destroy may be queued (the stored code and state say what to destroy).
ENVIRONMENT_DELETABLE = ENVIRONMENT_NEEDS_ATTENTION | ENVIRONMENT_CHANGEABLE | {EnvironmentStatus.FAILED}
# CLAIMS_NOTHING: the status says no resource of it exists (nothing was created, or all of it
# was destroyed); the transitions give it only when the stored state is empty.
ENVIRONMENT_CLAIMS_NOTHING = frozenset({EnvironmentStatus.FAILED, EnvironmentStatus.DELETED})
# SETTLED: no run is expected to change it by itself.
ENVIRONMENT_SETTLED = frozenset(EnvironmentStatus) - ENVIRONMENT_BUSY


class Environment(models.Model):
    """A sandbox environment: product + pattern version + account + name.

    `code_snapshot` keeps the rendered Terraform so delete works after the pattern changes.
    """

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="environments")
    account = models.ForeignKey(SandboxAccount, on_delete=models.PROTECT, related_name="environments")
    name = models.CharField(max_length=40, validators=[slug_validator])
    pattern_slug = models.CharField(max_length=60)
    pattern_version = models.CharField(max_length=30)
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=20, choices=EnvironmentStatus.choices, default=EnvironmentStatus.PROVISIONING
    )
    status_reason = models.TextField(blank=True, help_text="Why the environment is in its status, for people.")
    cidr = models.CharField("allocated CIDR", max_length=18, blank=True)
    outputs = models.JSONField(default=dict, blank=True)
    code_snapshot = models.JSONField(default=dict, blank=True, help_text="Rendered files: name -> content.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    orphans = models.JSONField(
        default=list, blank=True, help_text="Resources still tagged with this environment after destroy."
    )
    orphans_checked_at = models.DateTimeField(null=True, blank=True)
    # The latest finished drift check (portal.services.drift), for the badge and the filter.
    drift_status = models.CharField(max_length=12, choices=DriftStatus.choices, default=DriftStatus.UNKNOWN)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    # Expiry (portal.services.expiry): destroyed through the delete path at `expires_at`,
    # unless kept by staff; `expiry_warnings_sent` holds the warning offsets (seconds before
    # expiry) already sent, so each warning goes out exactly once.
    expires_at = models.DateTimeField(null=True, blank=True)
    kept = models.BooleanField(default=False, help_text="Staff: never expires.")
    expiry_warnings_sent = models.JSONField(default=list, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True, help_text="When expiry queued its destroy.")
    expiry_blocked = models.TextField(blank=True, help_text="Why expiry could not destroy it (reported, retried).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Deleted rows stay for audit, so the name is unique among the live ones.
            models.UniqueConstraint(
                fields=["product", "name"],
                condition=~Q(status="deleted"),
                name="environment_name_unique_per_product",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[choice for choice, _ in EnvironmentStatus.choices]),
                name="environment_status_known",
            ),
        ]
        indexes = [
            models.Index(fields=["status"]),
            models.Index(fields=["pattern_slug"]),
            models.Index(fields=["drift_status"]),
            # The drift scheduler: ready environments, least recently checked first.
            models.Index(fields=["status", "drift_checked_at"], name="environment_drift_due"),
            # The expiry pass and the list's sort and filter.
            models.Index(fields=["expires_at"], name="environment_expires_at"),
        ]

    def __str__(self):
        return f"{self.product.slug}/{self.name}"


class CidrAllocation(models.Model):
    """A block of a pool held by an environment. Released (not deleted) when it is destroyed."""

    pool = models.ForeignKey(CidrPool, on_delete=models.PROTECT, related_name="allocations")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="cidr_allocations")
    cidr = models.CharField("CIDR", max_length=18)
    allocated_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pool", "cidr"]
        verbose_name = "CIDR allocation"
        constraints = [
            # The database, not the allocator, is the last word on double allocation.
            models.UniqueConstraint(
                fields=["pool", "cidr"], condition=Q(released_at__isnull=True), name="cidr_held_once"
            ),
        ]

    def __str__(self):
        return self.cidr


class Endpoint(models.Model):
    """An FQDN/URL of an environment, written back after apply."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="endpoints")
    fqdn = models.CharField("FQDN", max_length=253)
    url = models.URLField("URL", max_length=2048, blank=True)
    kind = models.CharField(max_length=40, default="app")
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["fqdn"]
        constraints = [
            # An FQDN belongs to one live environment; released rows stay for audit.
            models.UniqueConstraint(
                fields=["fqdn"], condition=Q(released_at__isnull=True), name="endpoint_fqdn_unique"
            ),
        ]

    def __str__(self):
        return self.fqdn


class ListenerPriority(models.Model):
    """A listener-rule priority on an account's shared ALB listener, held by one environment.

    AWS refuses two rules with the same priority on a listener, so the portal hands them out
    like CIDRs: next free number, unique among the live ones, released on delete.
    """

    account = models.ForeignKey(SandboxAccount, on_delete=models.PROTECT, related_name="listener_priorities")
    listener_arn = models.CharField(max_length=2048)
    priority = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(50000)])
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="listener_priorities")
    allocated_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "listener priorities"
        ordering = ["account", "priority"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "listener_arn", "priority"],
                condition=Q(released_at__isnull=True),
                name="listener_priority_held_once",
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=1, priority__lte=50000), name="listener_priority_in_range"
            ),
        ]

    def __str__(self):
        return f"{self.priority}"
