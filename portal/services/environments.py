"""Requesting, deleting, retrying and cancelling environments.

The one entry point for the browser UI, the REST API and `manage.py provision`: every rule
about who may request what, and what happens in which order, lives here. Work is dispatched
only after the rows are committed (STYLE rule 2).
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from portal import selectors
from portal.models import Environment, EnvironmentStatus, Product, Run, RunKind, SandboxAccount
from portal.models.cmdb import ENVIRONMENT_DELETABLE
from portal.services import aws_accounts
from portal.services import runs as transitions
from portal.services.allocation import allocate_cidr, allocate_listener_priority
from portal.services.catalog import pin_version
from portal.services.expiry import default_expiry, passed_warnings
from portal.services.errors import Conflict, InvalidRequest
from portal.services.permissions import recorded_user, require_product
from portal.services.preflight import RequestCheck, check_request, name_taken
from provisioning.render import RenderError, render_workspace

# Terraform's state lives in the portal; every connection detail and credential arrives via
# TF_HTTP_* environment variables at run time, so the committed code holds no URL or secret.
BACKEND_TF = 'terraform {\n  backend "http" {}\n}\n'
PORTAL_FILES = {"portal_backend.tf": BACKEND_TF}


def render_context(environment: Environment, requester, *, listener_priority: int | None = None) -> dict:
    """The values a pattern's locals.tf.j2 may use (documented in patterns/README.md)."""
    account = environment.account
    return {
        "environment": {
            "name": environment.name,
            "product": environment.product.slug,
            "department": environment.product.department.slug,
        },
        "account": {
            "id": account.account_id,
            "region": account.region,
            "dns_zone": account.dns_zone,
            "kind": account.kind,
            "shared": dict(account.shared_infrastructure or {}),
        },
        "network": {"cidr": environment.cidr or None},
        "requester": getattr(requester, "username", "") or "portal",
        "allocations": {"listener_priority": listener_priority},
    }


def request_create(
    *,
    user,
    product: Product,
    pattern_slug: str,
    name: str | None = None,
    parameters: dict | None = None,
    account: SandboxAccount | None = None,
    checked: RequestCheck | None = None,
) -> Run:
    """Check, allocate, render and queue a create run; returns the queued run.

    Every problem of the request is found by the pre-flight check before anything is
    written (and refused all at once), and all writes are one transaction: a refused request
    leaves no trace, an accepted one is complete. The name check is repeated under the
    account lock, and the database's constraint decides a race. `checked`: the caller's own
    pre-flight check of this very request (the create page's), used instead of a second one.
    """
    require_product(user, product, "create")
    request = {"product": product, "pattern_slug": pattern_slug, "name": name, "parameters": parameters, "account": account}
    check = checked if checked is not None and checked.answers(**request) else check_request(**request)
    check.raise_if_refused()
    pattern, account, name, params = check.pattern, check.account, check.name, check.parameters

    try:
        with transaction.atomic():
            # Serialises allocations of this account (CIDRs) with other requests.
            SandboxAccount.objects.select_for_update().get(pk=account.pk)
            pin_version(pattern)
            if selectors.environment_name_taken(product, name):
                raise Conflict(name_taken(product, name), field="name")
            environment = Environment.objects.create(
                product=product,
                account=account,
                name=name,
                pattern_slug=pattern.slug,
                pattern_version=pattern.version,
                parameters=params,
                requested_by=recorded_user(user),
                expires_at=(expires_at := default_expiry(product, now := timezone.now())),
                expiry_warnings_sent=passed_warnings((expires_at - now).total_seconds()) if expires_at else [],
            )
            environment.cidr = allocate_cidr(environment)
            priority = allocate_listener_priority(environment) if "listener_priority" in pattern.allocations else None
            try:
                files = render_workspace(
                    pattern,
                    params,
                    render_context(environment, user, listener_priority=priority),
                    PORTAL_FILES,
                    parse_static=False,
                )
            except RenderError as exc:
                raise InvalidRequest(f"The pattern could not be rendered: {exc}", field="pattern") from None
            run = transitions.queue_run(environment, RunKind.CREATE, requested_by=environment.requested_by)
            if pattern.cloud == "aws":
                # Its session name is the run, so it is made once the run exists (every value
                # in it is an HCL literal; each later run regenerates it).
                files.update(aws_accounts.provider_file(run))
            environment.code_snapshot = files
            environment.save(update_fields=["cidr", "code_snapshot"])
    except IntegrityError:
        # Two identical requests raced past the exists() check: the constraint decided.
        raise Conflict(name_taken(product, name), field="name") from None
    return run


def request_delete(*, user, environment: Environment) -> Run:
    """Queue a destroy run that uses the environment's stored code snapshot."""
    require_product(user, environment.product, "delete")
    try:
        with transaction.atomic():
            env = Environment.objects.select_for_update().get(pk=environment.pk)
            if env.status not in ENVIRONMENT_DELETABLE:
                raise Conflict(
                    f"{env} is {env.get_status_display().lower()}; it can be deleted once its current run ends.",
                    field="environment",
                )
            run = transitions.queue_run(env, RunKind.DESTROY, requested_by=recorded_user(user))
    except IntegrityError:
        raise Conflict(f"{environment} already has a run in progress.", field="environment") from None
    return run


def request_retry(*, user, environment: Environment) -> Run:
    """Run the create again from the same code and state (after a cancel or a lost worker)."""
    require_product(user, environment.product, "retry")
    try:
        with transaction.atomic():
            env = Environment.objects.select_for_update().get(pk=environment.pk)
            if env.status != EnvironmentStatus.INCOMPLETE:
                raise Conflict(f"Only an incomplete environment can be retried; {env} is {env.get_status_display().lower()}.")
            run = transitions.queue_run(env, RunKind.CREATE, requested_by=recorded_user(user))
    except IntegrityError:
        raise Conflict(f"{environment} already has a run in progress.") from None
    return run


def request_cancel(*, user, run: Run) -> str:
    """Cancel a queued or running run (see `runs.request_cancel`)."""
    require_product(user, run.environment.product, "cancel runs of")
    return transitions.request_cancel(run.pk, recorded_user(user))
