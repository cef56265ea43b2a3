"""Browser UI views: thin. They read through `portal.selectors`, write through
`portal.services`, and turn a service's refusal into a message on the page (a form error,
or a 403 page that says why). No rule about who may do what lives here.
"""

from __future__ import annotations

import secrets
from datetime import datetime, time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal import selectors
from portal.models import ChangePlan, DriftCheck, Environment, EnvironmentStatus, Product, Run, RunStatus
from portal.models.cmdb import ENVIRONMENT_CHANGEABLE, ENVIRONMENT_DELETABLE
from portal.services import catalog as catalog_service
from portal.services import changes as change_service
from portal.services import drift as drift_service
from portal.services import environments as environment_service
from portal.services import expiry as expiry_service
from portal.services import preflight as preflight_service
from portal.services import tokens as token_service
from portal.services.catalog import get_catalog, get_pattern
from portal.throttles import environment_create_wait
from portal.services.errors import Conflict, NotAllowed, ServiceError
from portal.services.permissions import can_manage_product, require_product
from portal.web import display
from portal.web.filters import EnvironmentListFilterSet
from portal.web.forms import (
    ChangeRequestForm,
    DeleteConfirmForm,
    EnvironmentRequestForm,
    ExpiryExtendForm,
    ParameterForm,
    TokenCreateForm,
    apply_change_error,
    apply_service_error,
)

PAGE_SIZE = 25
CHANGES_SHOWN = 5  # change plans listed on an environment's page, newest first
DRIFT_CHECKS_SHOWN = 5  # drift checks in the drift card's history, newest first


def _refuse(exc: NotAllowed):
    """A refusal of the permission rules becomes Django's 403 page with the service's words."""
    raise PermissionDenied(exc.message)


# --- environments list --------------------------------------------------------------------------


@login_required
@require_GET
def environment_list(request):
    """Every environment (all users see all), filtered with the API's FilterSet, paginated;
    `?sort=expires` orders by expiry (the filter and the pager keep it)."""
    filterset = EnvironmentListFilterSet(request.GET or None, queryset=selectors.environments_for_list(), request=request)
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    environments = list(page.object_list)
    now = timezone.now()
    for environment in environments:
        environment.expiry = display.expiry(environment, now)
    return render(
        request,
        "portal/environments/list.html",
        {
            "filterset": filterset,
            "page": page,
            "environments": environments,
            "sorted_by_expiry": request.GET.get("sort") == "expires",
            "nav": "environments",
        },
    )


# --- create -----------------------------------------------------------------------------------


class _CreatePage:
    """The create form's pieces for one request: selected product, pattern and the forms."""

    def __init__(self, request, data=None):
        self.request = request
        self.user = request.user
        self._check = None
        self.catalog = get_catalog()
        self.products = list(selectors.products_for_user(self.user))
        source = data if data is not None else request.GET
        self.product = self._pick_product(source.get("product"))
        self.pattern = self._pick_pattern(source.get("pattern"))
        self.form = EnvironmentRequestForm(
            data,
            products=self.products,
            catalog=self.catalog,
            accounts_for=selectors.active_accounts_of_department,
            initial=self._initial(source) if data is None else None,
        )
        self.form.limit_accounts(self.product)
        if self.pattern is None:
            self.parameter_form = None
        elif data is not None:
            self.parameter_form = ParameterForm(self.pattern, data)
        else:
            parameter_form = ParameterForm(self.pattern)
            if self._typed_parameters(source) is not None:
                parameter_form.initial = parameter_form.values_from(source)
            self.parameter_form = parameter_form

    def _typed_parameters(self, source):
        """The typed parameter values a refresh may keep, or None: none on a plain GET, and
        none when the pattern was just switched - the fields were another pattern's, and a
        value typed (or defaulted) there must not become this pattern's (the form rendered
        them with `parameters_of`)."""
        if not source.get("refresh") or self.pattern is None:
            return None
        rendered_for = source.get("parameters_of")
        if rendered_for and rendered_for != self.pattern.slug:
            return None
        return source

    def _pick_product(self, value) -> Product | None:
        by_id = {str(product.pk): product for product in self.products}
        if value and str(value) in by_id:
            return by_id[str(value)]
        if value and str(value).isdigit():
            # Not one of the user's: the service refuses it on submit, with its reason.
            other = selectors.product_by_id(int(value))
            if other is not None:
                return other
        return self.products[0] if self.products else None

    def _pick_pattern(self, value):
        """The chosen pattern; by default the first one the product's account can run (an
        AWS pattern needs an AWS account, `cloud: none` runs anywhere)."""
        if value in self.catalog:
            return self.catalog[value]
        ordered = sorted(self.catalog.values(), key=lambda pattern: pattern.name)
        account = selectors.active_accounts_of_department(self.product.department_id).first() if self.product else None
        runnable = [p for p in ordered if p.cloud != "aws" or (account is not None and account.kind == "aws")]
        return (runnable or ordered or [None])[0]

    def _initial(self, source) -> dict:
        """Initial values: the typed ones on a refresh; a suggested name for the product."""
        initial = {"product": self.product.pk if self.product else None, "pattern": self.pattern.slug if self.pattern else None}
        suggestion = preflight_service.suggest_name(self.product) if self.product else ""
        name = (source.get("name") or "").strip()
        previous = (source.get("suggested_name") or "").strip()
        # An untouched suggestion follows the product; a typed name is kept.
        initial["name"] = name if name and name != previous else suggestion
        initial["suggested_name"] = suggestion
        if source.get("account"):
            initial["account"] = source.get("account")
        return initial

    def check(self):
        """The pre-flight check (`services.preflight`) of what is typed: every problem at once.
        A submit shows its problems on the fields; the panel lists them as the user types."""
        if self._check is not None or self.product is None:
            return self._check
        account = None
        account_id = str(self.form["account"].value() or "")
        if account_id.isdigit():
            account = selectors.account_by_id(int(account_id))
        parameters, parameter_problems = {}, {}
        typed = self.form.data if self.form.is_bound else self._typed_parameters(self.request.GET)
        if self.pattern is not None and typed is not None:
            parser = self.parameter_form if self.parameter_form is not None and self.parameter_form.is_bound else ParameterForm(self.pattern, typed)
            parser.is_valid()
            parameters = parser.parameters()
            parameter_problems = {name: " ".join(errors) for name, errors in parser.errors.items()}
        self._check = preflight_service.check_request(
            product=self.product,
            pattern_slug=self.pattern.slug if self.pattern else None,
            name=self.form["name"].value(),
            parameters=parameters,
            account=account,
            parameter_problems=parameter_problems,
        )
        return self._check

    def preflight(self) -> dict:
        """What the panel beside the form shows: the check's problems and what the request
        would meet (account, queue and wait, free networks, FQDNs). Information only."""
        check = self.check()
        if check is None:
            return {}
        info: dict = {"check": check, "problems": check.problems, "account": check.account, "fqdns": check.fqdns}
        info["name_ok"] = not any(problem.key == "name" for problem in check.problems)
        if check.account is not None and check.load is not None:
            info["load"] = check.load
            info["free_networks"] = check.free_networks
            info["wait"] = display.wait_estimate(
                running=check.load["running"],
                ahead_in_queue=check.load["queued"],
                slots=check.load["slots"],
                expected_seconds=self.pattern.expected_duration_seconds if self.pattern else 0,
            )
        return info

    def context(self) -> dict:
        return {
            "form": self.form,
            "parameter_form": self.parameter_form,
            "pattern": self.pattern,
            "product": self.product,
            "preflight": self.preflight(),
            "expected_duration": display.format_duration(self.pattern.expected_duration_seconds) if self.pattern else "",
            "nav": "create",
        }


@login_required
@require_http_methods(["GET", "POST"])
def environment_create(request):
    """The create form. A GET with `refresh=1` (the htmx request sent when product, pattern
    or account changes, or the no-JS "Update form" button) re-renders it with what was typed;
    htmx gets only the form body. A POST calls `request_create` and redirects to the run."""
    if request.method == "POST":
        if (wait := environment_create_wait(request)) is not None:
            response = render(request, "429.html", {"retry_after": int(wait + 0.999)}, status=429)
            response["Retry-After"] = str(int(wait + 0.999))
            return response
        page = _CreatePage(request, data=request.POST)
        status = 200
        form_ok = page.form.is_valid()
        if page.product is not None:
            try:
                require_product(request.user, page.product, "create")
            except NotAllowed as exc:
                _refuse(exc)
        check = page.check() if page.product is not None else None
        if check is not None and not check.ok:
            # Every problem at once: the form's own (a choice that does not exist) and the
            # pre-flight check's (name, FQDN, account, networks, each parameter).
            # A parameter the form could not parse already shows the form's own error.
            parsed_badly = set(page.parameter_form.errors) if page.parameter_form is not None else set()
            errors = {key: message for key, message in check.messages().items() if key.removeprefix("param:") not in parsed_badly or not key.startswith("param:")}
            apply_service_error(ServiceError(check.summary, errors=errors), page.form, page.parameter_form)
        elif form_ok and page.parameter_form is not None and page.parameter_form.is_valid():
            data = page.form.cleaned_data
            try:
                run = environment_service.request_create(
                    user=request.user,
                    product=data["product"],
                    pattern_slug=data["pattern"],
                    name=data["name"],
                    parameters=page.parameter_form.parameters(),
                    account=data["account"],
                    checked=check,
                )
            except ServiceError as exc:
                apply_service_error(exc, page.form, page.parameter_form)
                status = 403 if isinstance(exc, NotAllowed) else 200
            else:
                messages.success(request, f"{run.environment} requested: run #{run.pk} is queued.")
                return redirect("run-detail", pk=run.pk)
        return render(request, "portal/environments/create.html", page.context(), status=status)

    page = _CreatePage(request)
    if not page.products:
        raise PermissionDenied(
            "You may not create environments: you are not a member of any department. "
            "Ask an admin to add you to the department that owns your product."
        )
    template = "portal/environments/_create_body.html" if request.htmx else "portal/environments/create.html"
    return render(request, template, page.context())


# --- environment page and its actions -----------------------------------------------------------


def _environment(pk) -> Environment:
    try:
        return selectors.environment_detail(pk)
    except Environment.DoesNotExist:
        raise Http404("No such environment.") from None


def _environment_page(request, environment, *, delete_form=None, extend_form=None, status=200):
    runs = selectors.environment_runs(environment)
    pattern = get_catalog().get(environment.pattern_slug)
    context = {
        "environment": environment,
        "tone": display.tone(environment.status),
        "pattern": pattern,
        "endpoints": selectors.environment_endpoints(environment),
        "runs": runs,
        "active_run": next((run for run in runs if run.is_unfinished), None),
        "can_manage": can_manage_product(request.user, environment.product),
        "deletable": environment.status in ENVIRONMENT_DELETABLE,
        "retryable": environment.status == EnvironmentStatus.INCOMPLETE,
        "changeable": environment.status in ENVIRONMENT_CHANGEABLE,
        "update_failed": environment.status == EnvironmentStatus.UPDATE_FAILED,
        "change_plans": list(
            selectors.change_plans().filter(environment=environment).select_related("apply_run")[:CHANGES_SHOWN]
        ),
        "delete_form": delete_form or DeleteConfirmForm(environment=environment),
        **_drift_context(environment),
        **_expiry_context(request, environment, extend_form),
        "nav": "environments",
    }
    # An update that failed is retried by planning it again, from what that change asked for.
    context["failed_change"] = next(
        (plan for plan in context["change_plans"] if plan.apply_run_id), None
    ) if context["update_failed"] else None
    return render(request, "portal/environments/detail.html", context, status=status)


@login_required
@require_GET
def environment_detail(request, pk):
    return _environment_page(request, _environment(pk))


@login_required
@require_http_methods(["GET", "POST"])
def environment_delete(request, pk):
    """Queue a destroy once the environment's name was typed; refusals are explained.

    GET (a reload after a refused confirmation leaves the browser on this URL) goes to the
    environment's page."""
    if request.method == "GET":
        return redirect("environment-detail", pk=pk)
    environment = _environment(pk)
    form = DeleteConfirmForm(request.POST, environment=environment)
    if not form.is_valid():
        return _environment_page(request, environment, delete_form=form, status=400)
    return _queue_run(
        request, environment, environment_service.request_delete, "Delete of {env} requested: run #{run} destroys it."
    )


@login_required
@require_POST
def environment_retry(request, pk):
    return _queue_run(request, _environment(pk), environment_service.request_retry, "Retry of {env} requested: run #{run}.")


def _queue_run(request, environment, service, success: str):
    """Call a service that queues a run on `environment`; go to the run, or explain why not."""
    try:
        run = service(user=request.user, environment=environment)
    except NotAllowed as exc:
        _refuse(exc)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _environment_page(request, environment, status=409)
    messages.success(request, success.format(env=environment, run=run.pk))
    return redirect("run-detail", pk=run.pk)


# --- expiry: extend, keep ------------------------------------------------------------------------


def _expiry_context(request, environment, extend_form=None) -> dict:
    """What the expiry card shows and offers. Extending is offered (to those who may change
    the environment, the same rule as Change) while it has an expiry and is not gone; keeping
    only to staff (`expiry.set_kept`)."""
    can_manage = can_manage_product(request.user, environment.product)
    alive = environment.status not in expiry_service.GONE
    return {
        "expiry": display.expiry_card(environment, latest_allowed=expiry_service.latest_allowed(environment)),
        "expiry_extendable": can_manage and alive and environment.expires_at is not None and not environment.kept,
        "expiry_keepable": request.user.is_staff and alive,
        "extend_form": extend_form or ExpiryExtendForm(),
    }


@login_required
@require_POST
def environment_extend(request, pk):
    """Move the expiry later (`expiry.extend`): by the hours of the button pressed, or to the
    time typed. A refusal re-renders the page with the service's words (400 beyond the
    product's maximum or in the past, 409 when the environment is gone, 403 without rights)."""
    environment = _environment(pk)
    form = ExpiryExtendForm(request.POST)
    if not form.is_valid():
        return _environment_page(request, environment, extend_form=form, status=400)
    try:
        extended = expiry_service.extend(
            user=request.user, environment=environment,
            hours=form.cleaned_data["hours"], until=form.cleaned_data["until"],
        )
    except NotAllowed as exc:
        _refuse(exc)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _environment_page(request, environment, extend_form=form, status=409 if isinstance(exc, Conflict) else 400)
    messages.success(request, f"{extended} now expires at {extended.expires_at:%Y-%m-%d %H:%M} UTC.")
    return redirect("environment-detail", pk=environment.pk)


@login_required
@require_POST
def environment_keep(request, pk):
    """Staff: keep the environment from expiring (`kept=1`), or stop keeping it (`kept=0`)."""
    environment = _environment(pk)
    kept = request.POST.get("kept") == "1"
    try:
        environment = expiry_service.set_kept(user=request.user, environment=environment, kept=kept)
    except NotAllowed as exc:
        _refuse(exc)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _environment_page(request, environment, status=409 if isinstance(exc, Conflict) else 400)
    if kept:
        messages.success(request, f"{environment} is kept: it does not expire until staff stop keeping it.")
    elif environment.expires_at is None:
        messages.success(request, f"{environment} is no longer kept; it has no expiry.")
    elif environment.expires_at <= timezone.now():
        messages.warning(request, f"{environment} is no longer kept; it expired at {environment.expires_at:%Y-%m-%d %H:%M} UTC "
                                  "and is destroyed at expiry's next pass unless it is extended.")
    else:
        messages.success(request, f"{environment} is no longer kept; it expires at {environment.expires_at:%Y-%m-%d %H:%M} UTC.")
    return redirect("environment-detail", pk=environment.pk)


# --- drift: check now, plan the fix -----------------------------------------------------------


def _drift_context(environment) -> dict:
    """What the drift card shows (on the environment page and in each poll of the card; both
    add `can_manage`)."""
    checks = list(selectors.drift_checks().filter(environment=environment)[:DRIFT_CHECKS_SHOWN])
    concluded = None
    if checks and not any(check.status in display.CONCLUDED for check in checks):
        concluded = selectors.drift_checks().filter(environment=environment, status__in=display.CONCLUDED).first()
    drift = display.drift_card(environment, checks, concluded)
    latest = drift["latest"]
    return {
        "drift": drift,
        "drift_poll": display.drift_should_poll(drift),
        "drift_checkable": environment.status == EnvironmentStatus.READY,
        # `plan_fix` plans a change: only a changeable environment can have one.
        "drift_fixable": drift["fixable"] and environment.status in ENVIRONMENT_CHANGEABLE,
        "drift_fix_plan": latest.fix_plans.order_by("-created_at", "-id").first() if drift["fixable"] else None,
    }


@login_required
@require_GET
def environment_drift(request, pk):
    """The drift card alone, for htmx to poll while a check is queued or running (286 once
    none is: htmx stops)."""
    environment = _environment(pk)
    context = {
        "environment": environment,
        "can_manage": can_manage_product(request.user, environment.product),
        **_drift_context(environment),
    }
    response = render(request, "portal/environments/_drift.html", context, status=200 if context["drift_poll"] else LIVE_STOP)
    add_never_cache_headers(response)
    return response


@login_required
@require_POST
def environment_drift_check(request, pk):
    """Queue a drift check now (`drift.request_check`) and go back to the environment's page,
    where the card follows it; refusals are explained as the other actions' are."""
    environment = _environment(pk)
    try:
        check = drift_service.request_check(user=request.user, environment=environment)
    except NotAllowed as exc:
        _refuse(exc)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _environment_page(request, environment, status=409 if isinstance(exc, Conflict) else 400)
    messages.success(request, f"Drift check #{check.pk} of {environment} queued: nothing is changed or locked.")
    return redirect("environment-detail", pk=environment.pk)


@login_required
@require_POST
def drift_fix(request, pk):
    """Plan the change that undoes what a drift check found (`drift.plan_fix`) and go to the
    change plan's page, where it is reviewed and confirmed like any change. A check that found
    no drift is refused (400), one that is not the environment's latest too (409)."""
    try:
        check = selectors.drift_checks().get(pk=pk)
    except DriftCheck.DoesNotExist:
        raise Http404("No such drift check.") from None
    try:
        plan = drift_service.plan_fix(user=request.user, check=check)
    except NotAllowed as exc:
        _refuse(exc)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _environment_page(request, _environment(check.environment_id), status=409 if isinstance(exc, Conflict) else 400)
    messages.success(
        request,
        f"Fix of the drift of {check.environment} requested: run #{plan.plan_run_id} plans it; "
        "nothing is applied until you confirm.",
    )
    return redirect("change-detail", pk=plan.pk)


# --- day two: plan a change, review it, confirm it ------------------------------------------------


def _change_plan(pk) -> ChangePlan:
    try:
        return selectors.change_plans().get(pk=pk)
    except ChangePlan.DoesNotExist:
        raise Http404("No such change plan.") from None


def _catalog_versions(slug: str) -> list:
    """Every version of the pattern the catalog holds, newest first. A catalog without
    versions (`get_versions`) holds one: the bundled pattern."""
    get_versions = getattr(catalog_service, "get_versions", None)
    versions = list(get_versions(slug)) if get_versions is not None else []
    return versions or [get_pattern(slug)]


class _ChangePage:
    """The change form's pieces: the target version and the parameters of that version,
    prefilled with what the environment runs (or with what `source` - an earlier change
    plan of it, e.g. one whose update failed - asked for; or, on a refresh after the version
    was switched, with what was typed)."""

    def __init__(self, request, environment, *, data=None, source: ChangePlan | None = None):
        self.environment = environment
        self.source = source
        typed = data if data is not None else (request.GET if request.GET.get("refresh") else None)
        held = _catalog_versions(environment.pattern_slug)
        by_version = {pattern.version: pattern for pattern in held}
        wanted = (source.pattern_version if source else None, environment.pattern_version)
        default = next((version for version in wanted if version in by_version), held[0].version)
        asked = (typed or {}).get("pattern_version") or default
        # A version the catalog does not hold is the form's (and the service's) error; the
        # fields shown meanwhile are the default version's.
        self.pattern = by_version.get(asked, by_version[default])
        self.form = ChangeRequestForm(
            data,
            versions=[pattern.version for pattern in held],
            current=environment.pattern_version,
            initial={"pattern_version": asked} if data is None else None,
            refresh_url=reverse("environment-change", args=[environment.pk]),
        )
        if data is not None:
            self.parameter_form = ParameterForm(self.pattern, data)
        else:
            parameter_form = ParameterForm(self.pattern).fill(source.parameters if source is not None else environment.parameters)
            if typed is not None:
                parameter_form.initial.update(parameter_form.values_from(typed))
            self.parameter_form = parameter_form

    def context(self) -> dict:
        return {
            "environment": self.environment,
            "form": self.form,
            "parameter_form": self.parameter_form,
            "pattern": self.pattern,
            "source": self.source,
            "nav": "environments",
        }


def _change_source(request, environment) -> ChangePlan | None:
    """The change plan named by `?from=` (one of this environment's), to plan again."""
    value = request.GET.get("from", "")
    if not value.isdigit():
        return None
    return selectors.change_plans().filter(environment=environment, pk=int(value)).first()


@login_required
@require_http_methods(["GET", "POST"])
def environment_change(request, pk):
    """The change form. A GET with `refresh=1` (htmx, when the version changes, or the no-JS
    "Update form" button) re-renders it with the chosen version's fields and what was typed;
    htmx gets only the form body. POST calls `request_change` (a plan-only run; nothing is
    applied) and goes to the change plan's page; a refusal re-renders the form with what was
    typed and the service's words on the fields (400, or 409 for a collision)."""
    environment = _environment(pk)
    try:
        require_product(request.user, environment.product, "change")
    except NotAllowed as exc:
        _refuse(exc)
    try:
        if request.method == "GET":
            page = _ChangePage(request, environment, source=_change_source(request, environment))
            template = "portal/changes/_form_body.html" if request.htmx else "portal/changes/form.html"
            return render(request, template, page.context())
        page = _ChangePage(request, environment, data=request.POST)
    except ServiceError as exc:  # the pattern left the catalog
        messages.error(request, exc.message)
        return _environment_page(request, environment, status=409)

    status = 400
    if page.form.is_valid() and page.parameter_form.is_valid():
        try:
            plan = change_service.request_change(
                user=request.user,
                environment=environment,
                parameters=page.parameter_form.parameters(),
                pattern_version=page.form.cleaned_data["pattern_version"],
            )
        except NotAllowed as exc:
            _refuse(exc)
        except ServiceError as exc:
            apply_change_error(exc, page.form, page.parameter_form)
            status = 409 if isinstance(exc, Conflict) else 400
        else:
            messages.success(
                request,
                f"Change of {environment} requested: run #{plan.plan_run_id} plans it; nothing is applied until you confirm.",
            )
            return redirect("change-detail", pk=plan.pk)
    return render(request, "portal/changes/form.html", page.context(), status=status)


def _change_context(request, plan: ChangePlan) -> dict:
    """What the change plan's page (and each poll of its review) shows."""
    run = plan.plan_run
    environment = plan.environment
    applied = plan.apply_run_id is not None and plan.apply_run.status == RunStatus.SUCCEEDED
    return {
        "plan": plan,
        "run": run,
        "environment": environment,
        "stages": display.stage_bar(run),
        "queue": display.run_queue(run),
        "review": display.change_review(plan.resource_changes),
        # What the change asks for against what the environment runs now (after a
        # successful apply they are the same, so the list would be empty).
        "parameter_changes": None if applied else display.parameter_changes(environment.parameters, plan.parameters),
        "applied": applied,
        "stale_reason": change_service.stale_reason(plan),
        "can_manage": can_manage_product(request.user, environment.product),
        "changeable": environment.status in ENVIRONMENT_CHANGEABLE,
        "poll": not run.is_terminal,
        "nav": "environments",
    }


def _change_page(request, plan: ChangePlan, *, status=200):
    return render(request, "portal/changes/detail.html", _change_context(request, plan), status=status)


@login_required
@require_GET
def change_detail(request, pk):
    """A change plan: its plan run's progress, then what it does per resource and the
    confirm button. While the plan run is unfinished htmx polls this URL for the review
    partial (286 once the run has ended: htmx stops)."""
    plan = _change_plan(pk)
    if request.htmx:
        context = _change_context(request, plan)
        response = render(request, "portal/changes/_review.html", context, status=200 if context["poll"] else LIVE_STOP)
        add_never_cache_headers(response)
        return response
    return _change_page(request, plan)


@login_required
@require_POST
def change_confirm(request, pk):
    """Queue the update run that applies the saved plan and go to it; a stale plan is
    refused (409) with the reason, and nothing changes."""
    plan = _change_plan(pk)
    try:
        run = change_service.confirm_change(user=request.user, plan=plan)
    except NotAllowed as exc:
        _refuse(exc)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _change_page(request, _change_plan(pk), status=409)
    messages.success(request, f"Change of {plan.environment} confirmed: run #{run.pk} applies the plan.")
    return redirect("run-detail", pk=run.pk)


# --- the fleet -------------------------------------------------------------------------------


@login_required
@require_GET
def fleet(request):
    """Which pattern versions the live environments run, and what each could upgrade to
    (`catalog.fleet()`): counts only, so everyone signed in may see it."""
    rows = display.fleet_rows(catalog_service.fleet(), reverse("home"))
    return render(request, "portal/fleet.html", {"rows": rows, "nav": "fleet"})


# --- run page --------------------------------------------------------------------------------


def _run(pk) -> Run:
    try:
        return selectors.run_detail(pk)
    except Run.DoesNotExist:
        raise Http404("No such run.") from None


@login_required
@require_GET
def run_detail(request, pk):
    """The run page: the partials of `display.LIVE_FRAGMENTS` and the log; while the run (or
    its rollback) is unfinished, htmx polls `run_live` to refresh them."""
    run = _run(pk)
    events, truncated = selectors.run_events_tail(run.pk)
    context = {
        **display.run_page(run),
        "can_manage": can_manage_product(request.user, run.environment.product),
        "events": [display.log_line(event) for event in events],
        "events_truncated": truncated,
        "last_seq": events[-1].seq if events else 0,
        "version": "",
        "nav": "environments",
    }
    return render(request, "portal/runs/detail.html", context)


LIVE_STOP = 286  # htmx: stop polling
LIVE_LINES = 300  # log lines per poll at most; the next poll brings the rest


@login_required
@require_GET
def run_live(request, pk):
    """One poll of the run page (htmx): the log lines after `?after=SEQ` (appended to the log)
    and, out of band, the fragments that changed since `?v=`, the elapsed time and the next
    poller. 286 once the run and the rollback that took over have finished; then the flash
    messages of the page's arrival ("run #N is queued") are cleared too."""
    run = _run(pk)
    try:
        after = max(0, int(request.GET.get("after", "0")))
    except ValueError:
        after = 0
    events = selectors.run_events_after(run.pk, after=after, limit=LIVE_LINES)
    page = display.run_page(run)
    if not page["poll"]:
        # The last poll. Its reads are separate statements: the log and the run with its
        # environment come before the rollback run, so a rollback that ended in between (its
        # environment status and last lines in the same transaction) was shown as finished
        # beside the environment's old status, and nothing polled again (CI: the environment
        # never showed "failed"). Once the end is seen, read everything again after it.
        run = _run(pk)
        events = selectors.run_events_after(run.pk, after=after, limit=LIVE_LINES)
        page = display.run_page(run)
    context = {
        **page,
        "poll": page["poll"] or len(events) == LIVE_LINES,
        "can_manage": can_manage_product(request.user, run.environment.product),
        "events": [display.log_line(event) for event in events],
        "last_seq": events[-1].seq if events else after,
    }
    context["fragments"], context["version"] = display.changed_fragments(request, context, request.GET.get("v", ""))
    response = render(request, "portal/runs/_live.html", context, status=200 if context["poll"] else LIVE_STOP)
    add_never_cache_headers(response)
    return response


@login_required
@require_POST
def run_cancel(request, pk):
    run = _run(pk)
    try:
        result = environment_service.request_cancel(user=request.user, run=run)
    except NotAllowed as exc:
        _refuse(exc)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        text = {
            "dropped": f"Run #{run.pk} was cancelled before it started; nothing ran.",
            "requested": f"Cancel of run #{run.pk} requested: Terraform is being stopped.",
            "finished": f"Run #{run.pk} had already finished; there was nothing to cancel.",
        }.get(result, f"Run #{run.pk}: {result}.")
        (messages.info if result == "finished" else messages.success)(request, text)
    return redirect("run-detail", pk=run.pk)


# --- API tokens ---------------------------------------------------------------------------------


TOKEN_FORM_SESSION_KEY = "token_form_nonces"


def _issue_token_form_nonce(request) -> str:
    """A one-time value for the create-token form: the key is shown in the POST's answer
    (never stored, never put in a redirect), so reloading that page re-submits the form,
    and the nonce makes the second submit a refusal instead of a second token."""
    nonces = request.session.get(TOKEN_FORM_SESSION_KEY, [])[-9:]
    nonce = secrets.token_urlsafe(16)
    request.session[TOKEN_FORM_SESSION_KEY] = [*nonces, nonce]
    return nonce


def _use_token_form_nonce(request, nonce: str) -> bool:
    nonces = request.session.get(TOKEN_FORM_SESSION_KEY, [])
    if not nonce or nonce not in nonces:
        return False
    request.session[TOKEN_FORM_SESSION_KEY] = [n for n in nonces if n != nonce]
    return True


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request):
    """Own tokens; POST creates one and shows its key once, in this response only."""
    form = TokenCreateForm(request.POST or None)
    created_token, created_key = None, None
    status = 200
    if request.method == "POST" and not _use_token_form_nonce(request, request.POST.get("nonce", "")):
        form = TokenCreateForm()
        messages.error(
            request,
            "That form was already submitted (did the page reload?), so no second token was made. "
            "The token it created is listed below; its key was shown only once.",
        )
        status = 409
    elif request.method == "POST" and form.is_valid():
        expires = form.cleaned_data["expires_at"]
        # A date means "valid through that day", in the portal's time zone.
        expires_at = timezone.make_aware(datetime.combine(expires, time(23, 59, 59))) if expires else None
        try:
            created_token, created_key = token_service.create_token(
                user=request.user, name=form.cleaned_data["name"], expires_at=expires_at
            )
        except NotAllowed as exc:
            _refuse(exc)
        except ServiceError as exc:
            apply_service_error(exc, form, None)
        else:
            form = TokenCreateForm()
            status = 201
    response = render(
        request,
        "portal/tokens/list.html",
        {
            "tokens": list(token_service.list_tokens(request.user)),
            "form": form,
            "created_key": created_key,
            "created_token": created_token,
            "now": timezone.now(),
            "nonce": _issue_token_form_nonce(request),
            "nav": "tokens",
        },
        status=status,
    )
    # The key is in this page only: no cache may keep it.
    add_never_cache_headers(response)
    return response


@login_required
@require_POST
def token_revoke(request, pk):
    try:
        token = token_service.revoke_token(user=request.user, token_id=pk)
    except NotAllowed as exc:
        _refuse(exc)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Token “{token.name}” revoked: it no longer works.")
    return redirect(reverse("token-list"))
