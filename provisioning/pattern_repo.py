"""Pattern versions from a git repository whose tags are versions.

A company often keeps its Terraform templates in a repository of their own. Laid out like the
bundled `patterns/` folder (`<slug>/pattern.yaml`, ..., shared `modules/`), every tag named
`<slug>/<version>` (or `<slug>/v<version>`) is one version of one pattern: the `<slug>/` folder
(and the `modules/` it uses) as the tagged commit holds them. The tag's version must be the one
its pattern.yaml declares, so a tag can never publish a folder that says something else.

The repository is read through a bare mirror under `cache_dir` (`git clone --mirror`, then
`git fetch --prune --tags` on `sync`), and each tagged commit is unpacked once into
`cache_dir/trees/<commit>/`, read-only from then on: a tag that is moved to another commit is
a different tree, and the portal's immutability check (the pattern's digest) notices it.

Must not import Django or anything from `portal/`.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioning.patterns import SLUG_RE, Pattern, PatternError, _check_pattern

__all__ = ["GitPatternSource", "TAG_RE"]

# <slug>/<version> or <slug>/v<version>; the version as pattern.yaml spells it (1.4.0, 2.0.0-rc1).
TAG_RE = re.compile(r"^(?P<slug>[a-z0-9][a-z0-9-]*)/v?(?P<version>[0-9][0-9A-Za-z.+-]{0,28})$")
GIT_TIMEOUT = 120


@dataclass
class GitPatternSource:
    """The tagged pattern versions of one git repository (`url`: anything `git clone` takes)."""

    url: str
    cache_dir: Path

    @property
    def mirror(self) -> Path:
        return self.cache_dir / "mirror.git"

    def _git(self, *args: str, binary: bool = False) -> bytes | str:
        result = subprocess.run(
            ["git", *args], capture_output=True, timeout=GIT_TIMEOUT, check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        if result.returncode != 0:
            message = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise PatternError(self.url, "", f"git {args[0]} failed: {message[-1] if message else result.returncode}")
        return result.stdout if binary else result.stdout.decode("utf-8", "replace")

    def sync(self) -> None:
        """Clone the mirror the first time, fetch tags (moved and deleted ones too) after that."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        if not (self.mirror / "HEAD").exists():
            partial = Path(tempfile.mkdtemp(prefix="mirror-", dir=self.cache_dir))
            self._git("clone", "--quiet", "--mirror", self.url, str(partial / "m.git"))
            os.replace(partial / "m.git", self.mirror)
            shutil.rmtree(partial, ignore_errors=True)
        else:
            self._git("--git-dir", str(self.mirror), "fetch", "--quiet", "--prune", "--prune-tags", "--tags", "--force", "origin")

    def fingerprint(self) -> tuple:
        """Changes whenever a fetch changed the mirror's refs (cheap: two stat calls)."""
        stamps = []
        for path in (self.mirror / "packed-refs", self.mirror / "refs" / "tags"):
            try:
                stamps.append(path.stat().st_mtime_ns)
            except FileNotFoundError:
                stamps.append(None)
        return tuple(stamps)

    def tags(self) -> dict[str, str]:
        """tag name -> the commit it points at, for every tag of the mirror."""
        if not (self.mirror / "HEAD").exists():
            return {}
        out = self._git("--git-dir", str(self.mirror), "for-each-ref", "refs/tags",
                        "--format=%(refname:short) %(*objectname) %(objectname)")
        tags = {}
        for line in str(out).splitlines():
            name, peeled, direct = (line.split(" ") + ["", ""])[:3]
            tags[name] = peeled or direct  # an annotated tag peels to its commit
        return tags

    def _tree(self, commit: str) -> Path:
        """The tagged commit unpacked (once) under trees/<commit>/."""
        tree = self.cache_dir / "trees" / commit
        if tree.is_dir():
            return tree
        tree.parent.mkdir(parents=True, exist_ok=True)
        archive = self._git("--git-dir", str(self.mirror), "archive", "--format=tar", commit, binary=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=tree.parent))
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(partial, filter="data")
        try:
            os.replace(partial, tree)
        except OSError:  # another process unpacked it first
            shutil.rmtree(partial, ignore_errors=True)
        return tree

    def load(self) -> tuple[list[Pattern], list[PatternError]]:
        """Every tagged version, checked like a bundled pattern; broken ones as errors."""
        patterns: list[Pattern] = []
        errors: list[PatternError] = []
        for tag, commit in sorted(self.tags().items()):
            match = TAG_RE.match(tag)
            if not match or not SLUG_RE.match(match["slug"]):
                continue  # not a pattern version (release tags of the repository itself, ...)
            folder = self._tree(commit) / match["slug"]
            if not (folder / "pattern.yaml").is_file():
                errors.append(PatternError(f"{self.url}@{tag}", "", f"the tag has no {match['slug']}/pattern.yaml"))
                continue
            pattern, found = _check_pattern(folder)
            errors.extend(PatternError(f"{self.url}@{tag}:{e.path}", e.field, e.message, e.line) for e in found)
            if pattern is None:
                continue
            if pattern.version != match["version"]:
                errors.append(PatternError(
                    f"{self.url}@{tag}", "version",
                    f"the tag says version {match['version']} but {match['slug']}/pattern.yaml says {pattern.version}",
                ))
                continue
            patterns.append(_with_source(pattern, f"git {tag}"))
        return patterns, errors


def _with_source(pattern: Pattern, source: str) -> Pattern:
    from dataclasses import replace

    return replace(pattern, source=source)
