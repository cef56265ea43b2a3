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
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal import selectors
from portal.models import Environment, EnvironmentStatus, Product, Run, RunKind, RunStatus
from portal.services import environments as environment_service
from portal.services import tokens as token_service
from portal.services.catalog import get_catalog
from portal.services.errors import NotAllowed, ServiceError
from portal.services.permissions import can_manage_product
from portal.web import display
from portal.web.filters import EnvironmentListFilterSet
from portal.web.forms import (
    DeleteConfirmForm,
    EnvironmentRequestForm,
    ParameterForm,
    TokenCreateForm,
    apply_service_error,
)

PAGE_SIZE = 25


def _refuse(exc: NotAllowed):
    """A refusal of the permission rules becomes Django's 403 page with the service's words."""
    raise PermissionDenied(exc.message)


# --- environments list --------------------------------------------------------------------------


@login_required
@require_GET
def environment_list(request):
    """Every environment (all users see all), filtered with the API's FilterSet, paginated."""
    filterset = EnvironmentListFilterSet(request.GET or None, queryset=selectors.environments_for_list(), request=request)
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/environments/list.html",
        {"filterset": filterset, "page": page, "environments": page.object_list, "nav": "environments"},
    )


# --- create -----------------------------------------------------------------------------------


class _CreatePage:
    """The create form's pieces for one request: selected product, pattern and the forms."""

    def __init__(self, request, data=None):
        self.request = request
        self.user = request.user
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
            if source.get("refresh"):
                parameter_form.initial = parameter_form.values_from(source)
            self.parameter_form = parameter_form

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
        suggestion = environment_service.suggest_name(self.product) if self.product else ""
        name = (source.get("name") or "").strip()
        previous = (source.get("suggested_name") or "").strip()
        # An untouched suggestion follows the product; a typed name is kept.
        initial["name"] = name if name and name != previous else suggestion
        initial["suggested_name"] = suggestion
        if source.get("account"):
            initial["account"] = source.get("account")
        return initial

    def preflight(self) -> dict:
        """What the request would meet now: name taken, free networks, account queue.

        Information only; the service decides on submit.
        """
        info: dict = {}
        if self.product is None or self.pattern is None:
            return info
        account = None
        account_id = str(self.form["account"].value() or "")
        if account_id.isdigit():
            account = selectors.active_accounts_of_department(self.product.department_id).filter(pk=int(account_id)).first()
        if account is None:
            try:
                account = environment_service.choose_account(self.product, None)
            except ServiceError as exc:
                info["account_problem"] = exc.message
                return info
        info["account"] = account
        if self.pattern.cloud == "aws" and account.kind != "aws":
            info["cloud_problem"] = f"{self.pattern.name} needs an AWS account; {account.name} is {account.get_kind_display().split(' ')[0].lower()}."
        load = selectors.account_load(account)
        info["load"] = load
        info["wait"] = display.wait_estimate(
            running=load["running"],
            ahead_in_queue=load["queued"],
            slots=load["slots"],
            expected_seconds=self.pattern.expected_duration_seconds,
        )
        info["free_networks"] = selectors.free_network_count(account)
        name = (self.form["name"].value() or "").strip()
        if name and selectors.environment_name_taken(self.product, name):
            info["name_taken"] = f"{self.product.slug}/{name} already exists; choose another name."
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
        page = _CreatePage(request, data=request.POST)
        status = 200
        if page.form.is_valid() and page.parameter_form is not None and page.parameter_form.is_valid():
            data = page.form.cleaned_data
            try:
                run = environment_service.request_create(
                    user=request.user,
                    product=data["product"],
                    pattern_slug=data["pattern"],
                    name=data["name"],
                    parameters=page.parameter_form.parameters(),
                    account=data["account"],
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


def _environment_page(request, environment, *, delete_form=None, status=200):
    runs = selectors.environment_runs(environment)
    pattern = get_catalog().get(environment.pattern_slug)
    context = {
        "environment": environment,
        "tone": display.tone(environment.status),
        "pattern": pattern,
        "endpoints": selectors.environment_endpoints(environment),
        "runs": runs,
        "active_run": next((run for run in runs if run.status in (RunStatus.QUEUED, RunStatus.RUNNING)), None),
        "can_manage": can_manage_product(request.user, environment.product),
        "deletable": environment.status in environment_service.DELETABLE,
        "retryable": environment.status == EnvironmentStatus.INCOMPLETE,
        "delete_form": delete_form or DeleteConfirmForm(environment=environment),
        "nav": "environments",
    }
    return render(request, "portal/environments/detail.html", context, status=status)


@login_required
@require_GET
def environment_detail(request, pk):
    return _environment_page(request, _environment(pk))


@login_required
@require_POST
def environment_delete(request, pk):
    """Queue a destroy once the environment's name was typed; refusals are explained."""
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


# --- run page --------------------------------------------------------------------------------


def _run(pk) -> Run:
    try:
        return selectors.run_detail(pk)
    except Run.DoesNotExist:
        raise Http404("No such run.") from None


@login_required
@require_GET
def run_detail(request, pk):
    """The live run page; `run.js` keeps it current through `run_live`."""
    run = _run(pk)
    stage_reached = selectors.run_stage_reached(run)
    events, truncated = selectors.run_events_tail(run.pk)
    rollback = selectors.rollback_of_run(run)
    context = {
        "run": run,
        "environment": run.environment,
        "tone": display.tone(run.status),
        "env_tone": display.tone(run.environment.status),
        "stages": display.stage_bar(run, stage_reached),
        "progress": display.progress(run),
        "queue": display.run_queue(run),
        "elapsed": display.format_duration(display.elapsed_seconds(run)),
        "events": [display.event_payload(event) for event in events],
        "events_truncated": truncated,
        "last_seq": events[-1].seq if events else 0,
        "rollback": rollback,
        "rollback_tone": display.tone(rollback.status) if rollback else "",
        "poll": display.should_poll(run, rollback),
        "can_manage": can_manage_product(request.user, run.environment.product),
        "cancellable": run.status in (RunStatus.QUEUED, RunStatus.RUNNING),
        "endpoints": selectors.live_endpoints(run.environment_id)
        if run.kind == RunKind.CREATE and run.status == RunStatus.SUCCEEDED
        else [],
        "mirror": getattr(run, "github_mirror", None),
        "nav": "environments",
    }
    return render(request, "portal/runs/detail.html", context)


@login_required
@require_GET
def run_live(request, pk):
    """One tick of the run page: status + progress + log lines after `?after=SEQ` (JSON).

    `?plan=1` asks for the plan summary too (sent until the page has it).
    """
    run = _run(pk)
    try:
        after = max(0, int(request.GET.get("after", "0")))
    except ValueError:
        after = 0
    payload = display.live_payload(run, after=after, want_plan=request.GET.get("plan") == "1")
    response = JsonResponse(payload)
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
