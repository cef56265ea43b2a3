"""`drift_findings`: what a drift check reports from a refreshing plan's JSON (issue 16)."""

from provisioning.pipeline import SENSITIVE, drift_findings


def drift(address, before, after, actions=("update",), **extra):
    return {"address": address, "mode": "managed", "type": address.split(".")[0],
            "change": {"actions": list(actions), "before": before, "after": after, **extra}}


def change(address, actions, before=None, after=None):
    return {"address": address, "mode": "managed", "type": address.split(".")[0],
            "change": {"actions": actions, "before": before, "after": after}}


def test_only_drift_terraform_would_put_back_is_reported_with_its_attributes():
    shown = {
        "resource_drift": [
            drift("aws_security_group.app", {"tags": {"a": "1"}, "name": "x"}, {"tags": {"a": "1", "edited": "y"}, "name": "x"}),
            # Computed, set by nobody: refreshed, but no apply would touch it.
            drift("aws_iam_role.execution", {"managed_policy_arns": []}, {"managed_policy_arns": ["arn:x"]}),
            drift("aws_vpc.gone", {"cidr_block": "10.0.0.0/16"}, None, actions=("delete",)),
        ],
        "resource_changes": [
            change("aws_security_group.app", ["update"], {"tags": {"a": "1", "edited": "y"}}, {"tags": {"a": "1"}}),
            change("aws_iam_role.execution", ["no-op"]),
            change("aws_vpc.gone", ["create"], None, {"cidr_block": "10.0.0.0/16"}),
            change("data.aws_caller_identity.me", ["read"]),
        ],
    }
    assert drift_findings(shown) == [
        {"address": "aws_security_group.app", "type": "aws_security_group", "action": "update",
         "attributes": [{"attribute": "tags", "before": {"a": "1"}, "after": {"a": "1", "edited": "y"}}]},
        {"address": "aws_vpc.gone", "type": "aws_vpc", "action": "delete", "attributes": []},
    ]


def test_a_change_terraform_plans_without_seen_drift_reads_state_to_reality():
    shown = {"resource_changes": [change("aws_ecs_service.this", ["update"], {"health_check_grace_period_seconds": 0},
                                         {"health_check_grace_period_seconds": 60})]}
    assert drift_findings(shown)[0]["attributes"] == [
        {"attribute": "health_check_grace_period_seconds", "before": 60, "after": 0}]


def test_sensitive_values_never_leave_the_plan():
    shown = {
        "resource_drift": [drift("aws_db_instance.db", {"password": "old-secret", "port": 5432},
                                 {"password": "new-secret", "port": 5433},
                                 before_sensitive={"password": True}, after_sensitive={"password": True})],
        "resource_changes": [change("aws_db_instance.db", ["update"])],
    }
    attributes = {a["attribute"]: a for a in drift_findings(shown)[0]["attributes"]}
    assert attributes["password"] == {"attribute": "password", "before": SENSITIVE, "after": SENSITIVE}
    assert attributes["port"] == {"attribute": "port", "before": 5432, "after": 5433}
    assert "secret" not in repr(drift_findings(shown))


def test_an_in_sync_environment_has_no_findings():
    assert drift_findings({"resource_changes": [change("aws_vpc.this", ["no-op"])]}) == []
    assert drift_findings({}) == []
