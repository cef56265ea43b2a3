"""Secret redaction for everything a run records: Terraform output lines, parsed `-json`
events, the environment a step ran with, error explanations.

A `Redactor` knows the run's own secrets (state-backend password, cloud keys, GitHub token,
...) and replaces them wherever they appear; it also catches well-known credential shapes
that nobody registered (a GitHub token echoed by a provisioner, an AWS key id in an error).
Redaction happens *before* anything is stored or shown (STYLE rule 7).

Pure standard library: this module must not import Django, `portal/` or any other part of
the project, so every layer (runner, GitHub mirror, API) can use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Shorter values would turn ordinary words and numbers ("true", "80") into "[REDACTED]" all
# over the log and make it useless, while protecting nothing a brute force would not find.
MIN_SECRET_LENGTH = 4

# Environment variable names whose *values* are secret whatever they contain.
SECRET_KEY_PATTERN = re.compile(r"PASSWORD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)

# Credential shapes recognised without being registered. Each pattern either matches the
# whole secret, or has a `keep` group (the label) that stays in the text.
_TOKEN_PATTERNS: tuple[re.Pattern[str], ...] = (
    # GitHub classic tokens (personal, OAuth, user-to-server, server-to-server, refresh) and
    # fine-grained personal access tokens.
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    # AWS access key ids: long-term (AKIA) and temporary STS (ASIA).
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    # `aws_secret_access_key = ...` in credentials files, env dumps and JSON alike.
    re.compile(
        r"(?P<keep>aws_secret_access_key[\"']?\s*[=:]\s*[\"']?)[^\s\"',;]+", re.IGNORECASE
    ),
    # HTTP authorization headers, e.g. from TF_LOG=trace or a curl in a provisioner.
    re.compile(
        r"(?P<keep>authorization[\"']?\s*[:=]\s*[\"']?(?:basic|bearer|token)\s+)"
        r"[A-Za-z0-9._~+/\-]+=*",
        re.IGNORECASE,
    ),
    # Credentials embedded in a URL (`https://user:password@host`), e.g. an http backend
    # address or a git remote.
    re.compile(r"(?P<keep>[a-z][a-z0-9+.\-]*://[^/\s:@\"']+:)[^/\s@\"']+(?=@)", re.IGNORECASE),
)


def _encoded_variants(secret: str) -> set[str]:
    """The forms a secret takes inside JSON text, besides itself.

    Terraform's `-json` lines are JSON encoded by Go, which escapes quotes, backslashes and
    control characters and also turns `<`, `>`, `&` into `\\u003c`-style escapes; a secret
    containing any of those would slip through a plain substring replacement of the raw line.
    """
    variants = {secret}
    json_form = json.dumps(secret, ensure_ascii=False)[1:-1]
    variants.add(json_form)
    go_form = (
        json_form.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )
    variants.add(go_form)
    return variants


class Redactor:
    """Replaces known secrets and well-known token shapes with `REDACTED`.

    Not thread-safe for concurrent `add`; the runner registers secrets before it starts a
    process and only calls `redact` while reading output.
    """

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Registers a secret value; empty or very short values are ignored (see above).

        A multi-line secret (a PEM key, a JSON credentials blob) is also registered line by
        line, because output is redacted one line at a time.
        """
        if not isinstance(secret, str):
            return
        candidates = [secret]
        if "\n" in secret:
            candidates.extend(line.strip() for line in secret.splitlines())
        added = False
        for candidate in candidates:
            if len(candidate) < MIN_SECRET_LENGTH:
                continue
            for variant in _encoded_variants(candidate):
                if variant not in self._secrets:
                    self._secrets.add(variant)
                    added = True
        if added:
            # Longest first, so a secret that contains another one is replaced whole instead
            # of leaving its remainder in the text.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def redact(self, text: str) -> str:
        """Returns `text` with every known secret and recognised token shape replaced."""
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        for pattern in _TOKEN_PATTERNS:
            if "keep" in pattern.groupindex:
                text = pattern.sub(lambda m: m.group("keep") + REDACTED, text)
            else:
                text = pattern.sub(REDACTED, text)
        return text

    def redact_data(self, data: Any) -> Any:
        """Redacts every string (keys included) inside a parsed JSON value, recursively."""
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, dict):
            return {self.redact_data(k): self.redact_data(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.redact_data(item) for item in data]
        return data

    def redact_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """A copy of `env` safe to record: secret-named variables fully hidden, the rest
        redacted by value (an address may embed a password that is also registered)."""
        return {
            name: (REDACTED if value else value)
            if is_secret_name(name)
            else self.redact(value)
            for name, value in env.items()
        }


def is_secret_name(name: str) -> bool:
    """Whether an environment variable name says its value is a secret."""
    return bool(SECRET_KEY_PATTERN.search(name))
