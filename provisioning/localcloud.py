"""The offline cloud of `local` sandbox accounts: a folder that stands for the account.

The offline demo pattern (`demo-ecs`) leaves a footprint outside Terraform: each resource
keeps one file, named after it, in the environment's folder while it exists (made as its
creation starts, removed when it is destroyed). `find_orphans` reads that folder after a
destroy the way `provisioning.aws.find_orphans` reads the tagging API, so "what still
exists" is checkable without a cloud - by the portal's orphan report and by the
fault-injection suite, which compares it with the stored state.

Must not import Django or anything from `portal/`.
"""

from __future__ import annotations

from pathlib import Path

# The Terraform variable through which a pattern learns its footprint folder.
FOOTPRINT_VARIABLE = "footprint_dir"


def environment_folder(root: Path, environment_id: int) -> Path:
    """The folder standing for one environment's resources (numbers only: never request text)."""
    return Path(root) / f"environment-{int(environment_id)}"


def terraform_env(root: Path, environment_id: int) -> dict[str, str]:
    """`TF_VAR_footprint_dir` for a run; patterns that do not declare the variable ignore it."""
    return {f"TF_VAR_{FOOTPRINT_VARIABLE}": str(environment_folder(root, environment_id))}


def existing_resources(root: Path, environment_id: int) -> list[str]:
    """Names of the resources whose footprint exists, sorted."""
    folder = environment_folder(root, environment_id)
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.is_file())


def find_orphans(root: Path, environment_id: int) -> list[dict]:
    """After destroy: resources still present, as [{"arn", "tags"}] like the AWS report."""
    return [
        {"arn": f"local:environment-{int(environment_id)}/{name}", "tags": {}}
        for name in existing_resources(root, environment_id)
    ]
