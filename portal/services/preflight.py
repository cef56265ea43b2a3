"""The pre-flight check of an environment request: every problem at once, before anything is written.

One rule, three callers: the Create form shows the check as the user types and after a
refused submit (all of it, not the first kind of error), the API offers it as a dry run
(`POST /api/v1/environments/preflight/`), and `environments.request_create` raises from it.
Problems are keyed like service errors: `name`, `pattern`, `account`, `fqdn`, `parameters` and
`param:<name>` for one pattern parameter. What the request would meet (the account chosen,
its queue, free networks, the FQDNs it would get) rides along for the form's panel.

Who may request for the product is not part of it: that is a 403 (`permissions`), checked
first by the callers. Must not import views, the API or Celery tasks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property

from portal import selectors
from portal.models import Environment, Product, SandboxAccount
from portal.services.allocation import no_free_network, no_shared_listener
from portal.services.catalog import get_pattern
from portal.services.errors import Conflict, InvalidRequest, ServiceError
from provisioning.parameters import ParameterError, validate_parameters
from provisioning.patterns import Pattern
from provisioning.render import predict_fqdns

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$")
NAME_RULE = "Use 1-40 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."


@dataclass
class Problem:
    """One reason the request would be refused. `conflict`: it collides with what exists
    (a name or FQDN taken, the networks used up) rather than being wrong input."""

    key: str
    message: str
    conflict: bool = False


@dataclass
class RequestCheck:
    """The outcome of `check_request`: problems, plus what the request would meet."""

    product: Product
    name: str
    pattern: Pattern | None = None
    account: SandboxAccount | None = None
    parameters: dict | None = None
    problems: list[Problem] = field(default_factory=list)
    fqdns: list[str] = field(default_factory=list)
    free_networks: int | None = None
    asked: tuple = ()  # the request as given (see `answers`)

    @cached_property
    def load(self) -> dict | None:
        """The account's running and queued runs and its slots (for the panel and the dry
        run; `request_create` never reads it, so it costs no query there)."""
        return selectors.account_load(self.account) if self.account is not None else None

    @property
    def ok(self) -> bool:
        return not self.problems

    def answers(self, **request) -> bool:
        """Whether this check was made for exactly this request (`check_request`'s keywords),
        so a caller that already checked it need not check again."""
        return self.asked == _asked(**request)

    def add(self, key: str, message: str, *, conflict: bool = False) -> None:
        self.problems.append(Problem(key, message, conflict))

    def messages(self) -> dict[str, str]:
        """key -> message (several problems of one key joined), as `ServiceError.errors`."""
        joined: dict[str, list[str]] = {}
        for problem in self.problems:
            joined.setdefault(problem.key, []).append(problem.message)
        return {key: " ".join(messages) for key, messages in joined.items()}

    @property
    def summary(self) -> str:
        """One sentence for all the problems (the API's `message`, the form's top error)."""
        if len(self.problems) == 1:
            problem = self.problems[0]
            return f"{problem.key[6:]}: {problem.message}" if problem.key.startswith("param:") else problem.message
        if all(problem.key.startswith("param:") for problem in self.problems):
            return "Some parameters are not valid."
        return f"The request has {len(self.problems)} problems: " + " ".join(
            p.message if not p.key.startswith("param:") else f"{p.key[6:]}: {p.message}" for p in self.problems
        )

    def raise_if_refused(self) -> None:
        """The refusal create answers with: a 409 when only collisions are in the way, else 400."""
        if self.ok:
            return
        errors, message = self.messages(), self.summary
        cls = Conflict if all(problem.conflict for problem in self.problems) else InvalidRequest
        raise cls(message, field=self.problems[0].key if len(errors) == 1 else None, errors=errors)


def name_taken(product: Product, name: str) -> str:
    return f"{product.slug}/{name} already exists; choose another name."


def suggest_name(product: Product) -> str:
    """A free name like `sandbox-3` for the product's next environment."""
    taken = set(selectors.live_environment_names(product))
    number = 1
    while f"sandbox-{number}" in taken:
        number += 1
    return f"sandbox-{number}"


def choose_account(product: Product, account: SandboxAccount | None) -> SandboxAccount:
    """The requested account, or the department's first active one (InvalidRequest if none fits)."""
    if account is not None:
        if account.department_id != product.department_id:
            raise InvalidRequest(
                f"{account.name} belongs to another department than {product.name}.", field="account"
            )
        if not account.is_active:
            raise InvalidRequest(f"{account.name} takes no new environments (inactive).", field="account")
        return account
    account = selectors.active_accounts_of_department(product.department_id).first()
    if account is None:
        raise InvalidRequest(
            f"{product.department.name} has no active sandbox account; ask an admin to add one.", field="account"
        )
    return account


def check_request(
    *,
    product: Product,
    pattern_slug: str | None,
    name: str | None = None,
    parameters: dict | None = None,
    account: SandboxAccount | None = None,
    parameter_problems: dict[str, str] | None = None,
) -> RequestCheck:
    """Everything that would refuse this request now, at once.

    `parameter_problems`: what the caller's own parsing already refused (a form field that
    is not a number, ...); those parameters are not validated again, the rest are.
    """
    asked = _asked(product=product, pattern_slug=pattern_slug, name=name, parameters=parameters, account=account)
    name = (name or "").strip() or suggest_name(product)
    check = RequestCheck(product=product, name=name, asked=asked)

    if not NAME_RE.match(name):
        check.add("name", NAME_RULE)
    elif selectors.environment_name_taken(product, name):
        check.add("name", name_taken(product, name), conflict=True)

    try:
        check.pattern = get_pattern(pattern_slug or "")
    except ServiceError as exc:
        check.add("pattern", exc.message)

    try:
        check.account = choose_account(product, account)
    except ServiceError as exc:
        check.add("account", exc.message)

    pattern, account = check.pattern, check.account
    if account is not None:
        check.free_networks = selectors.free_network_count(account)
        if check.free_networks == 0:
            check.add("account", no_free_network(account), conflict=True)
    if pattern is not None and account is not None:
        if pattern.cloud == "aws" and account.kind != SandboxAccount.Kind.AWS:
            check.add("account", f"{pattern.name} needs an AWS account; {account.name} is {account.kind}.")
        elif "listener_priority" in pattern.allocations and (problem := no_shared_listener(account)):
            check.add("account", problem, conflict=True)

    if pattern is not None:
        _check_parameters(check, pattern, parameters or {}, parameter_problems or {})
    if pattern is not None and account is not None and check.parameters is not None and NAME_RE.match(name):
        _check_fqdns(check, pattern, account)
    return check


def check_change(environment, pattern: Pattern, parameters: dict) -> RequestCheck:
    """What would refuse changing `environment` to `parameters` (complete) of `pattern`:
    invalid parameters and FQDNs another environment holds, all at once, in the words and
    keys `check_request` uses. Its own FQDNs are no conflict."""
    check = RequestCheck(product=environment.product, name=environment.name, pattern=pattern, account=environment.account)
    _check_parameters(check, pattern, parameters, {})
    if check.parameters is not None:
        _check_fqdns(check, pattern, environment.account, changing=environment.pk)
    return check


def _asked(*, product, pattern_slug, name, parameters, account) -> tuple:
    return (
        product.pk, pattern_slug or "", (name or "").strip(),
        json.dumps(parameters or {}, sort_keys=True, default=str), account.pk if account is not None else None,
    )


def _check_parameters(check: RequestCheck, pattern: Pattern, parameters: dict, already: dict[str, str]) -> None:
    for key, message in already.items():
        check.add(f"param:{key}", message)
    given = {key: value for key, value in parameters.items() if key not in already}
    try:
        values = validate_parameters(pattern, given)
    except ParameterError as exc:
        for key, message in exc.errors.items():
            if key not in already:
                check.add(f"param:{key}" if key else "parameters", message)
        return
    if not already:
        check.parameters = values


def planned_fqdns(pattern: Pattern, *, name: str, product_slug: str, account: SandboxAccount,
                  parameters: dict) -> list[str]:
    """The FQDNs the pattern's `fqdn` templates give an environment (patterns/README.md)."""
    context = {
        "environment": {"name": name, "product": product_slug},
        "account": {"dns_zone": account.dns_zone},
        "params": parameters,
    }
    return predict_fqdns(pattern, context)


def _check_fqdns(check: RequestCheck, pattern: Pattern, account: SandboxAccount, *, changing: int | None = None) -> None:
    """The FQDNs the pattern says it will give this environment, and who holds them now
    (any product's environment: an FQDN is global; `changing`: the environment itself)."""
    check.fqdns = planned_fqdns(pattern, name=check.name, product_slug=check.product.slug,
                                account=account, parameters=check.parameters)
    for fqdn, holder in selectors.fqdn_holders(check.fqdns, excluding_environment_id=changing).items():
        check.add("fqdn", f"{fqdn} already belongs to {holder}; choose another name or application name.", conflict=True)

