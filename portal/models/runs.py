"""Runs and their events: the source of truth for progress (never Celery's result backend).

Status moves only through the compare-and-swap functions in `portal.services.runs`.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class RunKind(models.TextChoices):
    CREATE = "create", "Create"
    DESTROY = "destroy", "Destroy"
    ROLLBACK = "rollback", "Rollback"
    PLAN = "plan", "Plan a change"  # plan-only: renders the change, saves its plan; applies nothing
    UPDATE = "update", "Apply a change"  # applies exactly the saved plan a person confirmed


# Runs after which whatever of the environment still exists is an orphan (it should all be gone).
TEARDOWN_KINDS = frozenset({RunKind.DESTROY, RunKind.ROLLBACK})
# Runs that (re)write the environment's endpoints, whose DNS records are checked afterwards.
ENDPOINT_KINDS = frozenset({RunKind.CREATE, RunKind.UPDATE})


class RunStatus(models.TextChoices):
    """A run's status. Code names the groups below, never a literal set of statuses.

    TERMINAL: finished; `failed` is an expected failure (Terraform said no), `errored` a bug
    or infrastructure fault (see `traceback`), `interrupted` the worker died mid-run.
    """

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ERRORED = "errored", "Errored"
    CANCELLED = "cancelled", "Cancelled"
    INTERRUPTED = "interrupted", "Interrupted"


# WAITING: queued for a slot of its sandbox account (nothing of it has run).
WAITING = frozenset({RunStatus.QUEUED})
# ACTIVE: holds an account slot (dispatched to a worker, or the worker is running it).
ACTIVE = frozenset({RunStatus.RUNNING})
# UNFINISHED: at most one per environment (the database enforces it); blocks other runs.
UNFINISHED = WAITING | ACTIVE
TERMINAL = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ERRORED, RunStatus.CANCELLED, RunStatus.INTERRUPTED}
)
# CANCELLABLE: a waiting run is dropped, an active one asked to stop.
CANCELLABLE = UNFINISHED


class RunStage(models.TextChoices):
    """The pipeline step a run is in (finer than status; drives the UI's stage bar)."""

    QUEUED = "queued", "Queued"
    DISPATCHED = "dispatched", "Waiting for a worker"
    RENDER = "render", "Render"
    INIT = "init", "Init"
    PLAN = "plan", "Plan"
    APPLY = "apply", "Apply"
    OUTPUTS = "outputs", "Outputs"
    DESTROY = "destroy", "Destroy"
    # A finished run keeps the stage it reached, so its page shows where it stopped (older
    # rows that said "done" were given theirs back by migration 0005).


class Run(models.Model):
    """One create / destroy / rollback attempt on an environment."""

    environment = models.ForeignKey("portal.Environment", on_delete=models.CASCADE, related_name="runs")
    # Denormalised from the environment: the per-account queue is read on every dispatch.
    account = models.ForeignKey("portal.SandboxAccount", on_delete=models.PROTECT, related_name="runs")
    kind = models.CharField(max_length=10, choices=RunKind.choices)
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    stage = models.CharField(max_length=12, choices=RunStage.choices, default=RunStage.QUEUED)
    rollback_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollback_run"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pattern_slug = models.CharField(max_length=60)
    pattern_version = models.CharField(max_length=30)
    # What the environment was before this run, so a destroy cancelled while queued can put
    # the environment back exactly as it was.
    environment_status_before = models.CharField(max_length=20, blank=True)

    queued_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker running it")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    explanation = models.TextField(blank=True, help_text="What happened, for people.")
    traceback = models.TextField(blank=True, help_text="For developers; only for errored runs.")
    plan_summary = models.JSONField(null=True, blank=True)
    resources_planned = models.PositiveIntegerField(default=0)
    resources_done = models.PositiveIntegerField(default=0)
    commands = models.JSONField(default=list, blank=True, help_text="Exactly what ran (redacted).")
    last_event_seq = models.PositiveIntegerField(default=0)
    # Per-run credential for the state endpoint: only its hash is stored.
    state_token_hash = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(status__in=sorted(UNFINISHED)),
                name="one_unfinished_run_per_environment",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[choice for choice, _ in RunStatus.choices]),
                name="run_status_known",
            ),
        ]
        indexes = [models.Index(fields=["account", "status", "queued_at"])]

    def __str__(self):
        return f"run #{self.pk} {self.kind} {self.status}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_unfinished(self) -> bool:
        return self.status in UNFINISHED

    @property
    def is_cancellable(self) -> bool:
        return self.status in CANCELLABLE

    @property
    def progress_percent(self) -> int | None:
        return progress_percent(self.resources_done, self.resources_planned)


def progress_percent(done: int, planned: int) -> int | None:
    """How far an apply or destroy is, in percent of the resources planned (None: no plan yet)."""
    if not planned:
        return None
    return min(100, round(100 * done / planned))


class RunEvent(models.Model):
    """An append-only log line or event of a run; pages tail it with `?after=seq`."""

    class Kind(models.TextChoices):
        LOG = "log", "Terraform output"
        STAGE = "stage", "Stage change"
        SYSTEM = "system", "Portal"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    # When it happened on the worker, not when its batch reached the database (events are
    # buffered and written in batches, and some stage changes wait for the next batch).
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.LOG)
    level = models.CharField(max_length=10, default="info")
    message = models.TextField()
    data = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="run_event_seq_unique")]

    def __str__(self):
        return f"{self.run_id}#{self.seq} {self.message[:60]}"


class ReaperPass(models.Model):
    """When the reaper last looked at the leases (one row). A reaper that could not look for a
    while (the database or beat was down) gives every running run a fresh lease first instead
    of reaping: their workers could not renew either (issue 11)."""

    name = models.CharField(max_length=40, unique=True)
    at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "reaper passes"

    def __str__(self):
        return f"{self.name} at {self.at:%H:%M:%S}"
