"""The live processes of this host, read from Linux's /proc: the one scan used to find what a
Terraform step (or a test's or script's child) left running.

Zombies and exiting processes (states Z and X) are already dead - their parent just has not
reaped them - so they are never listed. A process that ends while it is being read is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Process:
    pid: int
    state: str
    pgrp: int

    def _read(self, name: str) -> bytes:
        return (PROC / str(self.pid) / name).read_bytes()

    def cmdline(self) -> str:
        """The command line, arguments joined by spaces ("" once it is gone)."""
        try:
            return self._read("cmdline").replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def environ(self) -> list[bytes]:
        """Its environment as `NAME=value` byte strings ([] once gone or not ours to read)."""
        try:
            return self._read("environ").split(b"\0")
        except OSError:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU seconds it has used so far (0.0 once it is gone)."""
        try:
            stat = self._read("stat").decode()
        except OSError:
            return 0.0
        fields = stat[stat.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def cwd(self) -> str:
        try:
            return os.readlink(PROC / str(self.pid) / "cwd")
        except OSError:
            return ""


def available() -> bool:
    return PROC.is_dir()


def live_processes() -> Iterator[Process]:
    """Every process that is still running, except this one."""
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # After the parenthesised command (which may hold spaces and parentheses): state, ppid, pgrp, ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X"):
            yield Process(pid=int(entry.name), state=fields[0], pgrp=int(fields[2]))


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group `pgid`."""
    return [p.pid for p in live_processes() if p.pgrp == pgid]
