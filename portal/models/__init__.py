"""The CMDB's data model. Rows are the source of truth for everything the UI and API show."""

from portal.models.access import ApiToken, IdempotencyRecord
from portal.models.changes import ChangePlan, DriftCheck, PatternVersion
from portal.models.cmdb import (
    CidrAllocation,
    CidrPool,
    Department,
    DriftStatus,
    Endpoint,
    Environment,
    EnvironmentStatus,
    ListenerPriority,
    Product,
    SandboxAccount,
)
from portal.models.mirror import GitHubMirror
from portal.models.notifications import Notification, NotificationEvent, NotificationTarget
from portal.models.runs import ReaperPass, Run, RunEvent, RunKind, RunStage, RunStatus
from portal.models.state import StateLock, StateLockRelease, StateVersion

__all__ = [
    "ApiToken",
    "ChangePlan",
    "DriftCheck",
    "DriftStatus",
    "PatternVersion",
    "GitHubMirror",
    "IdempotencyRecord",
    "Notification",
    "NotificationEvent",
    "NotificationTarget",
    "ListenerPriority",
    "ReaperPass",
    "CidrAllocation",
    "CidrPool",
    "Department",
    "Endpoint",
    "Environment",
    "EnvironmentStatus",
    "Product",
    "Run",
    "RunEvent",
    "RunKind",
    "RunStage",
    "RunStatus",
    "SandboxAccount",
    "StateLock",
    "StateLockRelease",
    "StateVersion",
]
