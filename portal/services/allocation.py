"""CIDR allocation from an account's pools: the next free block, never overlapping.

Callers hold the account row lock (see `environments.request_create`), and the partial
unique constraint on (pool, cidr) is the last word if two allocators ever race.
"""

import ipaddress

from portal.models import CidrAllocation, CidrPool, Environment, ListenerPriority
from portal.services.errors import Conflict


def allocate_cidr(environment: Environment) -> str:
    """Allocate the first free block of any pool of the environment's account.

    Returns "" when the account has no pools (the local demo target may not need any).
    """
    pools = list(CidrPool.objects.filter(account_id=environment.account_id).order_by("cidr"))
    if not pools:
        return ""
    held = {
        (pool_id, cidr)
        for pool_id, cidr in CidrAllocation.objects.filter(
            pool__in=pools, released_at__isnull=True
        ).values_list("pool_id", "cidr")
    }
    for pool in pools:
        network = ipaddress.IPv4Network(pool.cidr)
        for block in network.subnets(new_prefix=pool.prefix_length):
            if (pool.pk, str(block)) not in held:
                CidrAllocation.objects.create(pool=pool, environment=environment, cidr=str(block))
                return str(block)
    raise Conflict(no_free_network(environment.account, pools), field="account")


def no_free_network(account, pools=None) -> str:
    """The refusal when every block of the account's pools is allocated (shown by the
    pre-flight check before a request, and raised by `allocate_cidr` if one raced past it)."""
    pools = pools if pools is not None else list(CidrPool.objects.filter(account_id=account.pk).order_by("cidr"))
    sizes = ", ".join(f"{p.cidr} (/{p.prefix_length} blocks)" for p in pools)
    return (
        f"No free network left in the pools of account {account.name}: {sizes} are all allocated. "
        "Delete an environment or ask an admin to add a pool."
    )


def no_shared_listener(account) -> str | None:
    """Why the account cannot give a listener-rule priority, or None when it can."""
    if not (account.shared_infrastructure or {}).get("alb_listener_arn"):
        return (
            f"{account.name} has no shared load-balancer listener (shared_infrastructure.alb_listener_arn); "
            "ask an admin to record the account's shared infrastructure."
        )
    return None


# Low priorities are left for the platform team's own rules on the shared listener.
FIRST_LISTENER_PRIORITY = 100
LAST_LISTENER_PRIORITY = 50000


def allocate_listener_priority(environment: Environment) -> int:
    """The lowest free rule priority on the account's shared ALB listener.

    Caller holds the account row lock; the partial unique constraint backs it up.
    """
    account = environment.account
    problem = no_shared_listener(account)
    if problem:
        raise Conflict(problem, field="account")
    listener = account.shared_infrastructure["alb_listener_arn"]
    held = set(
        ListenerPriority.objects.filter(account=account, listener_arn=listener, released_at__isnull=True).values_list(
            "priority", flat=True
        )
    )
    for priority in range(FIRST_LISTENER_PRIORITY, LAST_LISTENER_PRIORITY + 1):
        if priority not in held:
            ListenerPriority.objects.create(
                account=account, listener_arn=listener, priority=priority, environment=environment
            )
            return priority
    raise Conflict(f"Every listener-rule priority on {account.name}'s shared listener is taken.", field="account")


def held_listener_priority(environment: Environment) -> int | None:
    """The listener-rule priority the environment holds (None when it holds none): a change
    re-renders its code with the priority it was given."""
    return (
        ListenerPriority.objects.filter(environment_id=environment.pk, released_at__isnull=True)
        .values_list("priority", flat=True)
        .first()
    )
