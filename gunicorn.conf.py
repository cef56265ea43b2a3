"""gunicorn settings shared by `make run` (scripts/devstack.py), the test suite
(tests/processes.py) and the container (Dockerfile, docker-compose.yml). Each passes
`--config <this file>`; the bind address, graceful timeout and logging stay on its command line.

Terraform's http state backend (every run's worker) is a client of this server, and it reuses
keep-alive connections. While it waits for a state lock it retries after 1, 2, 4, 8 and 16
seconds; with gunicorn's default keep-alive of 2 s the server closes the idle connection just
as the 2-second retry is sent, and that LOCK fails with EOF instead of being answered 423
(CI caught it as a flaky lock-wait test). A keep-alive longer than every retry interval, and
longer than a load balancer's idle timeout in front of it (AWS ALB: 60 s), means the client is
never the one racing a close. gthread parks idle keep-alive connections in its poller, so they
hold no thread.
"""

worker_class = "gthread"
workers = 2
threads = 4
keepalive = 75
