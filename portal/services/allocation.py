"""CIDR allocation from an account's pools: the next free block, never overlapping.

Callers hold the account row lock (see `environments.request_create`), and the partial
unique constraint on (pool, cidr) is the last word if two allocators ever race.
"""

import ipaddress

from portal.models import CidrAllocation, CidrPool, Environment
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
    sizes = ", ".join(f"{p.cidr} (/{p.prefix_length} blocks)" for p in pools)
    raise Conflict(
        f"No free network left in the pools of account {environment.account.name}: {sizes} are all allocated. "
        "Delete an environment or ask an admin to add a pool.",
        field="account",
    )
