"""`manage.py provision create|delete|retry|cancel|show|change|confirm|drift|fix-drift|versions|extend|keep` -
the same services as the UI and API.

`change` plans a change (new `--param`s and/or `--version`) and prints the saved plan per
resource; nothing is applied until `confirm <plan id>`. `drift` checks an environment now and
prints what changed outside Terraform; `fix-drift <check id>` plans putting it back (confirm
it like any change). `versions` prints the fleet (`--sync` fetches the pattern repository first). `extend` moves an
expiry later (`--hours N` or `--until TIME`), `keep` (staff) keeps one from expiring.

create/delete/retry print the run's progress while waiting (`--no-wait` returns at once) and
exit non-zero when the environment does not end where it was asked to go.
"""

import json
import time

from django.utils.dateparse import parse_datetime

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.models import ChangePlan, DriftCheck, Environment, EnvironmentStatus, Product, Run, SandboxAccount
from portal.selectors import environment_by_ref, latest_run, run_events_after
from portal.models.cmdb import ENVIRONMENT_SETTLED
from portal.models.runs import UNFINISHED
from portal.services import catalog, changes, drift, environments, expiry
from portal.services.catalog import get_pattern
from portal.services.dispatch import queue_position
from portal.services.errors import ServiceError



def coerce_parameter(pattern, key: str, raw: str):
    """`k=v` from the command line, typed by the pattern's schema (strings stay strings)."""
    schema = pattern.parameters.get("properties", {}).get(key, {})
    if schema.get("type") == "string":
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_parameters(pattern, items: list[str]) -> dict:
    """Repeated `--param KEY=VALUE` as a parameters dict, typed by the pattern's schema."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--param takes KEY=VALUE, got {item!r}")
        params[key.strip()] = coerce_parameter(pattern, key.strip(), value)
    return params


class Command(BaseCommand):
    help = "Create, delete, retry, cancel, show, change or check sandbox environments from the command line."

    def add_arguments(self, parser):
        parser.add_argument("--user", help="act as this user (default: the first superuser)")
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="request a new environment")
        create.add_argument("--product", required=True, help="product slug")
        create.add_argument("--pattern", required=True, help="design pattern slug")
        create.add_argument("--name", help="environment name (default: a free sandbox-N)")
        create.add_argument("--account", help="sandbox account name (default: the department's first)")
        create.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
        create.add_argument("--no-wait", action="store_true")
        for name in ("delete", "retry"):
            p = sub.add_parser(name, help=f"{name} an environment (id or product/name)")
            p.add_argument("environment")
            p.add_argument("--no-wait", action="store_true")
        cancel = sub.add_parser("cancel", help="cancel the environment's current run")
        cancel.add_argument("environment")
        show = sub.add_parser("show", help="print an environment and its runs")
        show.add_argument("environment")
        change = sub.add_parser("change", help="plan a change of an environment (applies nothing)")
        change.add_argument("environment")
        change.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
        change.add_argument("--version", help="pattern version to upgrade to")
        change.add_argument("--no-wait", action="store_true")
        confirm = sub.add_parser("confirm", help="apply a change plan exactly as it was planned")
        confirm.add_argument("plan", type=int, help="change plan id (printed by `change`)")
        confirm.add_argument("--no-wait", action="store_true")
        drift_check = sub.add_parser("drift", help="check an environment for drift now (changes nothing)")
        drift_check.add_argument("environment")
        drift_check.add_argument("--no-wait", action="store_true")
        fix = sub.add_parser("fix-drift", help="plan the change that puts back what a drift check found")
        fix.add_argument("check", type=int, help="drift check id (printed by `drift`)")
        fix.add_argument("--no-wait", action="store_true")
        extend = sub.add_parser("extend", help="move an environment's expiry later (within the product's maximum)")
        extend.add_argument("environment")
        when = extend.add_mutually_exclusive_group(required=True)
        when.add_argument("--hours", type=int, help="this many hours later (than now or the current expiry)")
        when.add_argument("--until", help="the new expiry, ISO 8601 (e.g. 2026-12-24T18:00:00Z)")
        keep = sub.add_parser("keep", help="staff: keep an environment from expiring (--off: expire it again)")
        keep.add_argument("environment")
        keep.add_argument("--off", action="store_true")
        versions = sub.add_parser("versions", help="which environments run which pattern version")
        versions.add_argument("--sync", action="store_true", help="fetch the pattern repository's tags first")

    def handle(self, *args, **options):
        user = self._user(options.get("user"))
        action = options["action"]
        try:
            if action == "create":
                run = self._create(user, options)
            elif action == "show":
                return self._show(self._env(options["environment"]))
            elif action == "cancel":
                env = self._env(options["environment"])
                run = latest_run(env)
                if run is None:
                    raise CommandError(f"{env} has no runs.")
                result = environments.request_cancel(user=user, run=run)
                self.stdout.write(f"run #{run.pk}: cancel {result}")
                return
            elif action == "change":
                return self._change(user, options)
            elif action == "drift":
                return self._drift(user, options)
            elif action == "fix-drift":
                check = DriftCheck.objects.select_related("environment__product").filter(pk=options["check"]).first()
                if check is None:
                    raise CommandError(f"No drift check #{options['check']}.")
                return self._print_plan(drift.plan_fix(user=user, check=check), options)
            elif action == "versions":
                return self._versions(options)
            elif action == "extend":
                until = None
                if options.get("until"):
                    until = parse_datetime(options["until"].replace("Z", "+00:00"))
                    if until is None or until.tzinfo is None:
                        raise CommandError(f"--until takes an ISO 8601 time with a zone, got {options['until']!r}")
                env = expiry.extend(user=user, environment=self._env(options["environment"]), hours=options.get("hours"),
                                    until=until)
                self.stdout.write(f"{env}: expires at {env.expires_at:%Y-%m-%d %H:%M:%S} UTC")
                return
            elif action == "keep":
                env = expiry.set_kept(user=user, environment=self._env(options["environment"]), kept=not options["off"])
                self.stdout.write(f"{env}: " + ("kept (never expires)" if env.kept else "expires again"))
                return
            elif action == "confirm":
                plan = ChangePlan.objects.select_related("environment__product__department").filter(pk=options["plan"]).first()
                if plan is None:
                    raise CommandError(f"No change plan #{options['plan']}.")
                run = changes.confirm_change(user=user, plan=plan)
            elif action == "delete":
                run = environments.request_delete(user=user, environment=self._env(options["environment"]))
            else:
                run = environments.request_retry(user=user, environment=self._env(options["environment"]))
        except ServiceError as exc:
            details = "; ".join(f"{k}: {v}" for k, v in exc.errors.items() if v != exc.message)
            raise CommandError(exc.message + (f" ({details})" if details else "")) from None
        self.stdout.write(f"{run.environment}: run #{run.pk} ({run.kind}) queued")
        if options.get("no_wait"):
            return
        final = self._follow(run)
        wanted = EnvironmentStatus.DELETED if action == "delete" else EnvironmentStatus.READY
        if final != wanted:
            raise CommandError(f"{run.environment} ended {final}")

    def _user(self, username):
        User = get_user_model()
        if username:
            try:
                return User.objects.get(username=username, is_active=True)
            except User.DoesNotExist:
                raise CommandError(f"No active user {username!r}.") from None
        user = User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
        if user is None:
            raise CommandError("No superuser exists; pass --user.")
        return user

    def _env(self, ref) -> Environment:
        try:
            return environment_by_ref(ref)
        except Environment.DoesNotExist:
            raise CommandError(f"No environment {ref!r} (use an id or product/name).") from None

    def _create(self, user, options) -> Run:
        try:
            product = Product.objects.select_related("department").get(slug=options["product"])
        except Product.DoesNotExist:
            raise CommandError(f"No product {options['product']!r}.") from None
        account = None
        if options.get("account"):
            account = SandboxAccount.objects.filter(name=options["account"]).first()
            if account is None:
                raise CommandError(f"No sandbox account {options['account']!r}.")
        pattern = get_pattern(options["pattern"])
        params = parse_parameters(pattern, options["param"])
        return environments.request_create(
            user=user, product=product, pattern_slug=pattern.slug, name=options.get("name"), parameters=params, account=account
        )

    def _change(self, user, options) -> None:
        env = self._env(options["environment"])
        params = parse_parameters(get_pattern(env.pattern_slug), options["param"])
        plan = changes.request_change(user=user, environment=env, parameters=params, pattern_version=options.get("version"))
        self._print_plan(plan, options)

    def _print_plan(self, plan, options) -> None:
        env = plan.environment
        self.stdout.write(f"{env}: change plan #{plan.pk}, run #{plan.plan_run_id} (plan) queued")
        if options.get("no_wait"):
            return
        self._follow(plan.plan_run)
        plan.refresh_from_db()
        plan.plan_run.refresh_from_db()
        if plan.plan_file is None:
            raise CommandError(f"The plan did not succeed: {plan.plan_run.explanation}")
        for change in plan.resource_changes:
            moved = f" (moved from {change['moved_from']})" if change["moved_from"] else ""
            attributes = f" [{', '.join(change.get('attributes') or [])}]" if change.get("attributes") else ""
            self.stdout.write(f"  {change['action']:8} {change['address']}{moved}{attributes}")
        self.stdout.write(f"Confirm with: manage.py provision confirm {plan.pk}")

    def _drift(self, user, options) -> None:
        env = self._env(options["environment"])
        check = drift.request_check(user=user, environment=env)
        self.stdout.write(f"{env}: drift check #{check.pk} queued")
        if options.get("no_wait"):
            return
        while not check.finished:
            time.sleep(0.5)
            check.refresh_from_db()
        self.stdout.write(f"{env}: {check.get_status_display()} - {check.explanation}")
        for row in check.resources:
            self.stdout.write(f"  {row['action']:8} {row['address']}")
            for attribute in row["attributes"]:
                self.stdout.write(f"    {attribute['attribute']}: {json.dumps(attribute['before'])} -> {json.dumps(attribute['after'])}")
        if check.status == DriftCheck.Status.DRIFTED:
            self.stdout.write(f"Plan the fix with: manage.py provision fix-drift {check.pk}")
        elif check.status == DriftCheck.Status.FAILED:
            raise CommandError(f"The drift check failed: {check.explanation}")

    def _versions(self, options) -> None:
        if options.get("sync"):
            catalog.sync_git()
        for row in catalog.fleet():
            marks = ["latest"] if row["latest"] else []
            if row["upgrade_available"]:
                marks.append(f"upgrade to {row['upgrade_available']}")
            if not row["in_catalog"]:
                marks.append("not in the catalog")
            self.stdout.write(f"{row['pattern']:20} {row['version']:10} {row['environments']:6} env(s)  "
                              f"{row['source'] or '-':24} {', '.join(marks)}")

    def _follow(self, run: Run) -> str:
        """Print events of the run (and of a rollback that follows it) until the environment settles."""
        env_id = run.environment_id
        seen: dict[int, int] = {}
        last_position = None
        while True:
            env = Environment.objects.get(pk=env_id)
            for r in Run.objects.filter(environment_id=env_id, pk__gte=run.pk).order_by("pk"):
                if r.status == "queued":
                    position = queue_position(r)
                    if position != last_position:
                        self.stdout.write(f"run #{r.pk} queued, position {position}")
                        last_position = position
                for event in run_events_after(r.pk, seen.get(r.pk, 0)):
                    seen[r.pk] = event.seq
                    self.stdout.write(f"[#{r.pk} {event.kind}] {event.message}")
            if env.status in ENVIRONMENT_SETTLED and not env.runs.filter(status__in=UNFINISHED).exists():
                self.stdout.write(f"{env}: {env.status}" + (f" - {env.status_reason}" if env.status_reason else ""))
                return env.status
            time.sleep(0.5)

    def _show(self, env: Environment) -> None:
        self.stdout.write(f"{env} [{env.status}] pattern {env.pattern_slug} {env.pattern_version} account {env.account}")
        if env.status_reason:
            self.stdout.write(f"  {env.status_reason}")
        if env.cidr:
            self.stdout.write(f"  network {env.cidr}")
        for endpoint in env.endpoints.filter(released_at__isnull=True):
            self.stdout.write(f"  endpoint {endpoint.fqdn} {endpoint.url}")
        for r in env.runs.order_by("queued_at"):
            self.stdout.write(
                f"  run #{r.pk} {r.kind} {r.status} stage={r.stage} {r.resources_done}/{r.resources_planned} {r.explanation}"
            )
