"""The shared "world" for permission tests (STYLE rule 18).

Import the fixture into a test module with `from tests.world import world  # noqa: F401`.

    owner    - member of Payments, which owns product `shop` and account `payments-sandbox`
    member   - another member of Payments
    stranger - member of Logistics only (owns product `parcel`)
    staff    - is_staff (sees and may do everything), member of nothing
    anonymous is simply an unauthenticated client.
"""

from dataclasses import dataclass

import pytest

from tests.factories import make_account, make_department, make_pool, make_product, make_user


@dataclass
class World:
    payments: object
    logistics: object
    account: object
    other_account: object
    product: object
    other_product: object
    owner: object
    member: object
    stranger: object
    staff: object


@pytest.fixture
def world() -> World:
    payments = make_department("payments", name="Payments")
    logistics = make_department("logistics", name="Logistics")
    account = make_account(payments, name="payments-sandbox", dns_zone="payments.sandbox.test", max_concurrent_runs=2)
    make_pool(account, "10.80.0.0/16", prefix_length=24)
    other_account = make_account(logistics, name="logistics-sandbox", dns_zone="logistics.sandbox.test")
    make_pool(other_account, "10.81.0.0/16", prefix_length=24)
    return World(
        payments=payments,
        logistics=logistics,
        account=account,
        other_account=other_account,
        product=make_product(payments, slug="shop", name="Shop"),
        other_product=make_product(logistics, slug="parcel", name="Parcel"),
        owner=make_user("owner", departments=[payments]),
        member=make_user("member", departments=[payments]),
        stranger=make_user("stranger", departments=[logistics]),
        staff=make_user("staff", is_staff=True),
    )
