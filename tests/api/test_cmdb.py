"""Departments, sandbox accounts and products: everyone reads, staff write, and the model's
own validation (the admin's messages) decides what is valid."""

import pytest

from portal.models import Department, Product, SandboxAccount
from tests.api.conftest import error_of
from tests.factories import make_pool

pytestmark = pytest.mark.django_db

ROLES = ["owner", "member", "stranger", "staff"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", ["departments", "accounts", "products"])
def test_everyone_signed_in_reads_the_inventory(api, role, resource):
    response = getattr(api, role).get(f"/api/v1/{resource}/")
    assert response.status_code == 200 and response.json()["count"] == 2
    first = response.json()["results"][0]
    assert getattr(api, role).get(f"/api/v1/{resource}/{first['id']}/").json() == first


@pytest.mark.parametrize("resource", ["departments", "accounts", "products"])
def test_anonymous_reads_nothing(api, resource):
    assert api.anonymous.get(f"/api/v1/{resource}/").status_code == 401


@pytest.mark.parametrize("role", ["owner", "member", "stranger"])
def test_only_staff_write(api, world, role):
    client = getattr(api, role)
    response = client.post("/api/v1/products/", {"department": "payments", "slug": "new", "name": "New"}, format="json")
    assert response.status_code == 403 and error_of(response)["code"] == "permission_denied"
    assert client.patch(f"/api/v1/products/{world.product.pk}/", {"name": "Renamed"}, format="json").status_code == 403
    assert client.delete(f"/api/v1/departments/{world.payments.pk}/").status_code == 403
    assert Product.objects.filter(slug="new").count() == 0


def test_staff_create_update_and_delete_a_product(api, world):
    response = api.staff.post(
        "/api/v1/products/", {"department": "payments", "slug": "checkout", "name": "Checkout"}, format="json"
    )
    assert response.status_code == 201
    created = response.json()
    assert created == {"id": created["id"], "department": "payments", "slug": "checkout", "name": "Checkout", "description": "",
                       "default_lifetime_hours": None, "max_lifetime_hours": None, "drift_check_hours": None}
    response = api.staff.patch(f"/api/v1/products/{created['id']}/", {"description": "Pays"}, format="json")
    assert response.status_code == 200 and response.json()["description"] == "Pays"
    assert api.staff.delete(f"/api/v1/products/{created['id']}/").status_code == 204
    assert not Product.objects.filter(slug="checkout").exists()


def test_validation_speaks_with_the_admins_words(api, world):
    """The same messages as the admin's form, because both come from `full_clean()`."""
    error = error_of(api.staff.post("/api/v1/products/", {"department": "payments", "slug": "Bad_Slug", "name": "X"}, format="json"))
    assert error["fields"]["slug"] == [
        "Use 1-40 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
    ]
    error = error_of(api.staff.post("/api/v1/products/", {"department": "payments", "slug": "shop", "name": "X"}, format="json"))
    assert error["fields"]["slug"] == ["Product with this Slug already exists."]
    error = error_of(api.staff.post("/api/v1/products/", {"department": "payments", "slug": "x", "name": ""}, format="json"))
    assert error["fields"]["name"] == ["This field cannot be blank."]


def test_account_rules_from_the_model_clean(api, world):
    body = {
        "department": "payments",
        "name": "aws-sandbox",
        "account_id": "123456789012",
        "kind": "aws",
        "dns_zone": "aws.sandbox.test",
    }
    error = error_of(api.staff.post("/api/v1/accounts/", body, format="json"))
    assert error["fields"] == {"role_arn": ["An AWS account needs the role the portal assumes."]}
    body["role_arn"] = "arn:aws:iam::999999999999:role/portal"
    error = error_of(api.staff.post("/api/v1/accounts/", body, format="json"))
    assert error["fields"] == {"role_arn": ["The role must belong to this account."]}
    body.update(role_arn="arn:aws:iam::123456789012:role/portal", external_id="s3cr3t", account_id="12345")
    error = error_of(api.staff.post("/api/v1/accounts/", body, format="json"))
    assert error["fields"]["account_id"] == ["An AWS account id is exactly 12 digits."]
    body["account_id"] = "123456789012"
    body["max_concurrent_runs"] = 0
    error = error_of(api.staff.post("/api/v1/accounts/", body, format="json"))
    assert error["fields"] == {"max_concurrent_runs": ["Ensure this value is greater than or equal to 1."]}
    del body["max_concurrent_runs"]
    response = api.staff.post("/api/v1/accounts/", body, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert "external_id" not in created and created["has_external_id"] is True
    assert SandboxAccount.objects.get(pk=created["id"]).external_id == "s3cr3t"


def test_an_account_names_a_simulated_aws_and_says_so_everywhere(api, world):
    body = {
        "department": "payments", "name": "moto", "account_id": "210987654321", "kind": "aws",
        "role_arn": "arn:aws:iam::210987654321:role/portal", "dns_zone": "aws.sandbox.test",
    }
    for bad in ("http://key:secret@127.0.0.1:5000", "http://127.0.0.1:5000/?token=x", "ftp://moto", "127.0.0.1:5000"):
        error = error_of(api.staff.post("/api/v1/accounts/", {**body, "endpoint_url": bad}, format="json"))
        assert list(error["fields"]) == ["endpoint_url"], bad
    local = error_of(api.staff.patch(f"/api/v1/accounts/{world.account.pk}/", {"endpoint_url": "http://127.0.0.1:5000"}, format="json"))
    assert local["fields"] == {"endpoint_url": ["Only an AWS account talks to an AWS endpoint."]}
    assert not SandboxAccount.objects.filter(name="moto").exists()

    created = api.staff.post("/api/v1/accounts/", {**body, "endpoint_url": "http://127.0.0.1:5000"}, format="json").json()
    assert created["endpoint_url"] == "http://127.0.0.1:5000" and created["simulated"] is True
    assert api.owner.get(f"/api/v1/accounts/{world.account.pk}/").json()["simulated"] is False
    cleared = api.staff.patch(f"/api/v1/accounts/{created['id']}/", {"endpoint_url": ""}, format="json").json()
    assert cleared["simulated"] is False


def test_a_patch_is_validated_against_the_whole_row(api, world):
    response = api.staff.patch(f"/api/v1/accounts/{world.account.pk}/", {"kind": "aws"}, format="json")
    assert error_of(response)["fields"] == {"role_arn": ["An AWS account needs the role the portal assumes."]}
    world.account.refresh_from_db()
    assert world.account.kind == "local"


def test_accounts_show_their_pools(api, world):
    make_pool(world.account, "10.90.0.0/20", prefix_length=26, description="extra")
    account = api.owner.get(f"/api/v1/accounts/{world.account.pk}/").json()
    assert [(p["cidr"], p["prefix_length"]) for p in account["cidr_pools"]] == [("10.80.0.0/16", 24), ("10.90.0.0/20", 26)]


def test_departments_list_their_members_and_staff_change_them(api, world):
    department = api.owner.get(f"/api/v1/departments/{world.payments.pk}/").json()
    assert department == {"id": world.payments.pk, "slug": "payments", "name": "Payments", "members": ["member", "owner"]}
    response = api.staff.patch(f"/api/v1/departments/{world.payments.pk}/", {"members": ["owner", "stranger"]}, format="json")
    assert response.status_code == 200 and response.json()["members"] == ["owner", "stranger"]
    assert set(world.payments.members.values_list("username", flat=True)) == {"owner", "stranger"}
    error = error_of(api.staff.patch(f"/api/v1/departments/{world.payments.pk}/", {"members": ["ghost"]}, format="json"))
    assert "members" in error["fields"]


def test_staff_create_a_department_and_delete_an_unused_one(api):
    response = api.staff.post("/api/v1/departments/", {"slug": "research", "name": "Research"}, format="json")
    assert response.status_code == 201 and response.json()["members"] == []
    assert api.staff.delete(f"/api/v1/departments/{response.json()['id']}/").status_code == 204
    assert not Department.objects.filter(slug="research").exists()


@pytest.mark.parametrize(
    ("resource", "query", "expected"),
    [
        ("departments", "q=pay", ["payments"]),
        ("departments", "member=stranger", ["logistics"]),
        ("products", "department=logistics", ["parcel"]),
        ("products", "q=sho", ["shop"]),
        ("accounts", "department=payments", ["payments-sandbox"]),
        ("accounts", "kind=aws", []),
        ("accounts", "is_active=true", ["logistics-sandbox", "payments-sandbox"]),
    ],
)
def test_cmdb_filters(api, resource, query, expected):
    rows = api.owner.get(f"/api/v1/{resource}/?{query}").json()["results"]
    assert sorted(row.get("slug") or row["name"] for row in rows) == expected


def test_accounts_filter_by_aws_account_id(api, world):
    rows = api.owner.get(f"/api/v1/accounts/?account_id={world.other_account.account_id}").json()["results"]
    assert [row["name"] for row in rows] == ["logistics-sandbox"]
