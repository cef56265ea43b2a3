#!/usr/bin/env python
"""The REST API over real HTTP, against gunicorn as `make run` and the container start it
(issue 14). Prints one JSON document.

For each size (default 10,000 and 100,000 environments, each with an endpoint and two runs;
see bench.common.seed_cmdb) on a scratch database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/bench_api_http, dropped and recreated):

- latency: one keep-alive connection, requests one after another (what a script sees),
  p50/p99/max over --requests requests of each URL, after a warm-up;
- throughput: --clients keep-alive connections in parallel for --seconds, requests per second;
- queries per request, counted in-process (Django's CaptureQueriesContext) at page sizes 10,
  50 and 200: must not grow with the page size or the table size.

URLs: the first list page of 50, with offsets (and its total count) and as a keyset page
(`?cursor=`, no count); 40 pages deep, by following keyset `next` links and as `offset=2000`;
a filtered list (status + product), both ways; `?fqdn=`; the CMDB lookup
`/api/v1/endpoints/by-fqdn/<fqdn>/`; one environment by id. Goals (issue 14): list page p99 <= 50 ms, lookup by FQDN p99 <= 20 ms.

Usage: `.venv/bin/python bench/api_http.py [--sizes 10000,100000] [--requests 1000]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import prepare_database, seed_cmdb  # noqa: E402

from tests.processes import free_port, gunicorn_process  # noqa: E402

GOALS_P99_MS = {
    "list_first_page_50": 50.0, "list_first_page_50_keyset": 50.0, "list_deep_page_50_keyset": 50.0,
    "list_deep_page_50_offset": 50.0, "list_filtered_50": 50.0, "list_filtered_50_keyset": 50.0,
    "endpoint_by_fqdn": 20.0,
}


def percentile(ordered: list[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 2)


class Client:
    """One keep-alive HTTP/1.1 connection sending the API token."""

    def __init__(self, base: str, key: str):
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.headers = {"Authorization": f"Token {key}", "Accept": "application/json"}

    def get(self, path: str) -> tuple[int, bytes]:
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        return response.status, response.read()


def latency(client: Client, paths: list[str]) -> dict:
    for path in paths[:20]:
        status, body = client.get(path)
        if status != 200:
            raise SystemExit(f"{path} answered {status}: {body[:300]!r}")
    wall = []
    for path in paths:
        started = time.perf_counter()
        status, body = client.get(path)
        wall.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise SystemExit(f"{path} answered {status}: {body[:300]!r}")
    wall.sort()
    return {"requests": len(wall), "p50_ms": round(statistics.median(wall), 2), "p99_ms": percentile(wall, 99),
            "max_ms": round(wall[-1], 2)}


def throughput(base: str, key: str, paths: list[str], clients: int, seconds: float) -> dict:
    done = [0] * clients
    errors = [0] * clients
    deadline = time.monotonic() + seconds

    def drive(index: int) -> None:
        client = Client(base, key)
        rng = random.Random(index)
        while time.monotonic() < deadline:
            status, _ = client.get(rng.choice(paths))
            done[index] += 1
            errors[index] += status != 200

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"clients": clients, "seconds": round(elapsed, 1), "requests_per_second": round(sum(done) / elapsed, 1),
            "errors": sum(errors)}


def queries_of(path: str, key: str) -> int:
    from django.db import connection
    from django.test import Client as DjangoClient
    from django.test.utils import CaptureQueriesContext

    client = DjangoClient()
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, HTTP_AUTHORIZATION=f"Token {key}", HTTP_HOST="localhost")
    assert response.status_code == 200, response.content[:300]
    return len(captured)


def deep_cursor(client: Client, first: str, pages: int) -> str:
    """The `next` link `pages` pages into the list (a cursor, or an offset if that is what it gives)."""
    path = first
    for _ in range(pages):
        status, body = client.get(path)
        assert status == 200, body[:300]
        following = json.loads(body)["next"]
        parts = urlsplit(following)
        path = f"{parts.path}?{parts.query}"
    return path


def measure_size(count: int, args, database_url: str, scratch: Path) -> dict:
    from django.db import connection

    prepare_database(database_url)
    connection.close()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    rng = random.Random(count)
    started = time.perf_counter()
    key, fqdns = seed_cmdb(count, rng)
    seeded = time.perf_counter() - started
    from portal.models import Environment, Product

    product = Product.objects.order_by("id").values_list("slug", flat=True)[3]
    some_id = Environment.objects.order_by("id").values_list("id", flat=True)[count // 2]
    connection.close()

    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(scratch), "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "portal.settings", "DATABASE_URL": database_url,
        "PORTAL_VAR_DIR": str(scratch / "var"), "SECRET_KEY": "bench-only", "DEBUG": "0",
        "LOG_LEVEL": "WARNING", "CELERY_BROKER_URL": "memory://", "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    web = gunicorn_process(env, scratch / "logs", port=port)
    web.start()
    base = f"http://127.0.0.1:{port}"
    try:
        client = Client(base, key)
        sample = [rng.choice(fqdns) for _ in range(args.requests)]
        deep = deep_cursor(client, "/api/v1/environments/?limit=50&cursor=", 40)
        urls = {
            "list_first_page_50": ["/api/v1/environments/?limit=50"] * args.requests,
            "list_first_page_50_keyset": ["/api/v1/environments/?limit=50&cursor="] * args.requests,
            "list_deep_page_50_keyset": [deep] * args.requests,
            "list_deep_page_50_offset": ["/api/v1/environments/?limit=50&offset=2000"] * args.requests,
            "list_filtered_50": [f"/api/v1/environments/?limit=50&status=ready&product={product}"] * args.requests,
            "list_filtered_50_keyset": [f"/api/v1/environments/?limit=50&cursor=&status=ready&product={product}"] * args.requests,
            "list_by_fqdn": [f"/api/v1/environments/?fqdn={fqdn}" for fqdn in sample],
            "endpoint_by_fqdn": [f"/api/v1/endpoints/by-fqdn/{fqdn}/" for fqdn in sample],
            "environment_by_id": [f"/api/v1/environments/{some_id}/"] * args.requests,
        }
        results = {name: latency(client, paths) for name, paths in urls.items()}
        mixed = [paths[i % len(paths)] for paths in urls.values() for i in range(50)]
        load = throughput(base, key, mixed, args.clients, args.seconds)
    finally:
        web.stop()
    for name, paths in urls.items():
        results[name]["queries"] = queries_of(paths[0], key)
    by_page_size = {mode: {str(limit): queries_of(f"/api/v1/environments/?limit={limit}{query}", key) for limit in (10, 50, 200)}
                    for mode, query in (("offset", ""), ("keyset", "&cursor="))}
    connection.close()
    return {"environments": count, "seed_seconds": round(seeded, 1), "latency": results,
            "throughput_mixed": load, "list_queries_by_page_size": by_page_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_api_http")
    with tempfile.TemporaryDirectory(prefix="bench-http-") as scratch:
        scratch = Path(scratch)
        os.environ.update({
            "DATABASE_URL": database_url, "PORTAL_VAR_DIR": str(scratch / "var"), "SECRET_KEY": "bench-only",
            "DEBUG": "0", "PORTAL_TEST_FAST_HASHER": "1", "LOG_LEVEL": "ERROR", "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "DJANGO_SETTINGS_MODULE": "portal.settings", "CELERY_BROKER_URL": "memory://",
        })
        import django

        django.setup()
        sizes = [measure_size(int(size), args, database_url, scratch) for size in args.sizes.split(",")]
    queries = [size["latency"][name]["queries"] for size in sizes for name in size["latency"]]
    per_url = {name: {size["latency"][name]["queries"] for size in sizes} for name in sizes[0]["latency"]}
    report = {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "server": "gunicorn with gunicorn.conf.py (gthread, as make run and the container)",
        "sizes": sizes,
        "goals_p99_ms": GOALS_P99_MS,
        "goals_met": {
            "p99": all(size["latency"][name]["p99_ms"] <= goal for size in sizes for name, goal in GOALS_P99_MS.items()),
            "queries_constant_in_page_size": all(
                len(set(counts.values())) == 1 for size in sizes for counts in size["list_queries_by_page_size"].values()
            ),
            "queries_constant_in_table_size": all(len(counts) == 1 for counts in per_url.values()),
        },
        "max_queries_per_request": max(queries),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
