"""Fault-injection suite (GitHub issue 11: "Terraform state is never lost, and the portal
never claims a rollback that did not happen").

Run it with

    make test-faults                      # also the second half of `make test` (and so of CI)
    make test-faults FAULTS_PYTEST_ARGS='-k database -x'

which is

    PORTAL_VAR_DIR=var/test-faults SECRET_KEY=... PORTAL_TEST_FAST_HASHER=1 RUN_LEASE_SECONDS=15 \\
      .venv/bin/python -m tests.faults.cluster -- .venv/bin/pytest tests/faults

`tests/faults/cluster.py` creates a PostgreSQL cluster of the suite's own (initdb on a free
port, 127.0.0.1 only, in a temporary folder under var/faults/; as the `postgres` OS user when
run as root) so a test can stop "the database" without touching anything else, and removes it
afterwards. Outside the launcher (a plain `make test-regular` / `pytest`) these tests are
collected and skipped ("fault suite: run `make test-faults`"). The broker is
CELERY_BROKER_URL when set (CI: Redis), else the filesystem transport under var/test-faults.

Everything is real: gunicorn serving the state backend, a Celery worker of
FAULTS_WORKER_CONCURRENCY (4) processes, Terraform, the `demo-ecs` pattern in `local`
accounts (one per worker process, so the 100 cancels run 4 at a time). Beat's reaper runs in
a thread of each test, as beat would. Scenarios:

- the database stopped for 5 s and 60 s during plan, apply and destroy (test_database_outage);
- the web server SIGKILLed for 10 s and 60 s at the end of an apply (test_web_server_outage);
- a 20 MiB state (test_large_state);
- cancel at queued, init, plan start, plan end and apply, 20 times each at random offsets
  (test_cancel; FAULTS_SEED=<n> repeats a session's offsets);
- the worker SIGKILLed during apply, rollback and destroy (test_worker_kill);
- and one create + delete without a fault (test_baseline), so a red scenario means the fault.

After each scenario `invariants.py` checks, against the database and the footprint the demo
pattern leaves under LOCAL_CLOUD_DIR: the last stored state lists every resource that exists
(else STATE LOST); the environment's status and every message agree with the stored state
(else FALSE CLAIM: e.g. "rolled back" / `failed` / `deleted` while resources remain, `ready`
with resources missing, `incomplete` without "the stored state lists N resource(s)" or
"state unknown"); event numbers of every run are 1..n with no gap; no run or state lock is
left; then a delete ends `deleted` with an empty state and no footprint.

The report - faults injected, runs, states lost (goal 0), false claims (goal 0), other
problems, per test and per scenario with details - is printed at the end of the pytest run
and written to `<PORTAL_VAR_DIR>/faults-report.json` (var/test-faults/faults-report.json).
Each test also asserts its own scenarios, so any lost state or false claim turns it red.
"""
