"""Day two: change an environment's parameters or upgrade its pattern version - plan, review, confirm.

`request_change` renders the changed code and queues a plan-only run (kind `plan`) that saves
Terraform's plan; nothing is applied. A person reads the plan (per resource: create, update,
replace, delete, move) and `confirm_change` queues the `update` run that applies exactly that
saved plan file. A plan goes stale - and cannot be confirmed - once the stored state's serial
has moved, once the environment has had another run, or once it is older than
CHANGE_PLAN_MAX_AGE_SECONDS. A failed update never destroys: the environment becomes
`update_failed` and may be planned again; its parameters, version and code change only when an
update succeeds (`portal.services.runs.succeed_update`).
"""

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.models import ChangePlan, Environment, Run, RunKind, RunStatus
from portal.models.cmdb import ENVIRONMENT_CHANGEABLE
from portal.services import aws_accounts
from portal.services import runs as transitions
from portal.services import state as state_service
from portal.services.allocation import held_listener_priority
from portal.services.catalog import get_pattern, pin_version
from portal.services.environments import PORTAL_FILES, render_context
from portal.services.errors import Conflict, InvalidRequest
from portal.services.permissions import recorded_user, require_product
from portal.services.preflight import check_change
from provisioning.render import RenderError, render_workspace


def _not_changeable(environment: Environment) -> Conflict:
    return Conflict(
        f"{environment} is {environment.get_status_display().lower()}; only a ready environment (or one whose "
        "update failed) can be changed.",
        field="environment",
    )


def request_change(*, user, environment: Environment, parameters: dict | None = None,
                   pattern_version: str | None = None, fixes_drift=None) -> ChangePlan:
    """Check and render a change, and queue its plan-only run; returns the change plan.

    `parameters` are merged over the environment's current ones (a key set to its old value
    changes nothing); `pattern_version` is the version to upgrade to (default: the one it
    runs). Refused with a 4xx error and nothing written: no rights, a busy environment, a
    version the catalog does not hold, invalid parameters, an FQDN another environment holds,
    or a change that changes nothing (unless it `fixes_drift`: then the same code is planned
    again, which puts back what changed outside Terraform).
    """
    require_product(user, environment.product, "change")
    if environment.status not in ENVIRONMENT_CHANGEABLE:
        raise _not_changeable(environment)
    target = pattern_version or environment.pattern_version
    pattern = get_pattern(environment.pattern_slug, target)
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidRequest("parameters must be an object of name -> value.", field="parameters")
    merged = {**(environment.parameters or {}), **(parameters or {})}
    # Keys the new version no longer knows are dropped on an upgrade (its schema decides).
    known = set((pattern.parameters or {}).get("properties", {}))
    if target != environment.pattern_version and known:
        merged = {key: value for key, value in merged.items() if key in known or key in (parameters or {})}
    check = check_change(environment, pattern, merged)
    check.raise_if_refused()
    values = check.parameters
    if values == environment.parameters and target == environment.pattern_version and fixes_drift is None:
        raise InvalidRequest("The change changes nothing: the parameters and the version are the ones it runs.",
                             field="parameters")

    try:
        with transaction.atomic():
            env = Environment.objects.select_for_update().get(pk=environment.pk)
            if env.status not in ENVIRONMENT_CHANGEABLE:
                raise _not_changeable(env)
            try:
                files = render_workspace(pattern, values,
                                         render_context(env, env.requested_by, listener_priority=held_listener_priority(env)),
                                         PORTAL_FILES, parse_static=False)
            except RenderError as exc:
                raise InvalidRequest(f"The pattern could not be rendered: {exc}", field="pattern") from None
            pin_version(pattern)
            before = env.pattern_version
            run = transitions.queue_run(env, RunKind.PLAN, requested_by=recorded_user(user), pattern_version=target)
            if pattern.cloud == "aws":
                # As for a create: the provider file (account guard, endpoints, default tags) is
                # made once the run exists, and each later run regenerates it (execution).
                files.update(aws_accounts.provider_file(run))
            return ChangePlan.objects.create(
                environment=env, plan_run=run, requested_by=recorded_user(user), parameters=values,
                pattern_version=target, pattern_version_before=before, code_snapshot=files, fixes_drift=fixes_drift,
            )
    except IntegrityError:
        raise Conflict(f"{environment} already has a run queued or running.", field="environment") from None


def stale_reason(plan: ChangePlan, *, now=None) -> str | None:
    """Why `plan` can no longer be confirmed, or None while it can."""
    now = now or timezone.now()
    environment = plan.environment
    if plan.plan_run.status != RunStatus.SUCCEEDED or plan.planned_at is None:
        return "its plan run has not succeeded, so there is no plan to apply."
    if plan.apply_run_id is not None:
        return f"it was already confirmed (run #{plan.apply_run_id})."
    if Run.objects.filter(environment_id=environment.pk, pk__gt=plan.plan_run_id).exists():
        return "the environment has had another run since it was planned; plan the change again."
    serial = state_service.latest_serial(environment.pk)
    if serial != plan.state_serial:
        return (f"the environment's state has moved since it was planned (serial {plan.state_serial} then, "
                f"{serial} now); plan the change again.")
    max_age = timedelta(seconds=settings.CHANGE_PLAN_MAX_AGE_SECONDS)
    if now - plan.planned_at > max_age:
        return f"it is older than {settings.CHANGE_PLAN_MAX_AGE_SECONDS} s (CHANGE_PLAN_MAX_AGE_SECONDS); plan the change again."
    if environment.status not in ENVIRONMENT_CHANGEABLE:
        return f"the environment is {environment.get_status_display().lower()}."
    return None


def confirm_change(*, user, plan: ChangePlan) -> Run:
    """Queue the update run that applies exactly the saved plan; refused (409) when it is stale."""
    require_product(user, plan.environment.product, "change")
    with transaction.atomic():
        env = Environment.objects.select_for_update().get(pk=plan.environment_id)
        plan = ChangePlan.objects.select_for_update().select_related("plan_run", "environment").get(pk=plan.pk)
        plan.environment = env
        if reason := stale_reason(plan):
            raise Conflict(f"This plan cannot be confirmed: {reason}", field="plan")
        run = transitions.queue_run(env, RunKind.UPDATE, requested_by=recorded_user(user), pattern_version=plan.pattern_version)
        ChangePlan.objects.filter(pk=plan.pk).update(apply_run=run, confirmed_at=timezone.now(), confirmed_by=recorded_user(user))
    return run
