"""Soak test of the embedded broker: N messages from P concurrent producer processes through a
real Celery worker; counts decode errors, worker deaths and lost messages. Prints JSON.

    .venv/bin/python bench/broker_soak.py                          # atomicfs:// (the default)
    .venv/bin/python bench/broker_soak.py --transport filesystem   # kombu's own, for comparison

Each message is a `portal.health` task; a message counts as delivered when the worker logs it
received (its task id), so the result backend plays no part. Producers pause a random 0 to
`--pace-ms` between messages, so the worker is often waiting on an empty queue when a message
appears - the moment kombu#1551 needs - and `--payload-kib` pads each message (the task then
refuses the unknown argument; only delivery is counted). A worker death is the main
process exiting or Celery logging "Unrecoverable error". Everything runs in a scratch folder
(SQLite database, broker folders) that is removed afterwards. Also used by
tests/portal/test_broker_soak.py.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent
RECEIVED = re.compile(r"Task portal\.health\[([0-9a-f-]+)\] received")


def _env(var_dir: Path, transport: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if name in os.environ}
    env.update({
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PYTHONPATH": str(BASE_DIR),
        "PYTHONUNBUFFERED": "1",
        "DEBUG": "1",
        "PORTAL_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'soak.sqlite3'}",
        "CELERY_BROKER_URL": f"{transport}://",
        "GITHUB_TOKEN": "",
        "GITHUB_REPOSITORY": "",
    })
    return env


def _produce(env: dict[str, str], count: int, pace_ms: float, payload_kib: int, seed: int,
             queue: multiprocessing.Queue) -> None:
    """One producer process: send `count` health tasks, pausing up to `pace_ms` between them."""
    os.environ.update(env)
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    from portal.tasks import health

    import random

    rng = random.Random(seed)
    kwargs = {"padding": "x" * (payload_kib * 1024)} if payload_kib else {}
    ids, errors = [], 0
    for _ in range(count):
        try:
            ids.append(health.app.send_task("portal.health", kwargs=kwargs).id)  # no signature check
        except Exception:  # noqa: BLE001 - counted, the soak goes on
            errors += 1
        if pace_ms:
            time.sleep(rng.uniform(0, pace_ms) / 1000)
    queue.put((ids, errors))


def soak(transport: str = "atomicfs", messages: int = 2000, producers: int = 4, concurrency: int = 4,
         pace_ms: float = 200.0, payload_kib: int = 256, timeout: float = 600.0) -> dict:
    """Run one soak and return its figures."""
    var_dir = Path(tempfile.mkdtemp(prefix=f"soak-{transport}-", dir=BASE_DIR / "var" if (BASE_DIR / "var").is_dir() else None))
    env = _env(var_dir, transport)
    log_path = var_dir / "worker.log"
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True)
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [str(BIN_DIR / "celery"), "-A", "portal", "worker", "-c", str(concurrency), "-l", "info", "-n", f"soak-{transport}@%h"],
                cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        started = time.monotonic()
        while b" ready." not in log_path.read_bytes():
            if worker.poll() is not None or time.monotonic() - started > 60:
                raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)

        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        share = [messages // producers + (1 if i < messages % producers else 0) for i in range(producers)]
        began = time.monotonic()
        procs = [context.Process(target=_produce, args=(env, n, pace_ms, payload_kib, i, results)) for i, n in enumerate(share)]
        for proc in procs:
            proc.start()
        sent, send_errors = [], 0
        for _ in procs:
            ids, errors = results.get(timeout=timeout)
            sent += ids
            send_errors += errors
        for proc in procs:
            proc.join()
        produced_s = time.monotonic() - began

        wanted = set(sent)
        deadline = time.monotonic() + timeout
        delivered: set[str] = set()
        while time.monotonic() < deadline:
            delivered = set(RECEIVED.findall(log_path.read_text(errors="replace"))) & wanted
            if len(delivered) == len(wanted) or worker.poll() is not None:
                break
            time.sleep(0.5)
        if worker.poll() is None:  # a dead worker delivers nothing more: wait no longer for it
            time.sleep(1.0)
            delivered = set(RECEIVED.findall(log_path.read_text(errors="replace"))) & wanted
        elapsed = time.monotonic() - began
        alive = worker.poll() is None
        text = log_path.read_text(errors="replace")
        figures = {
            "transport": f"{transport}://",
            "messages": messages,
            "producers": producers,
            "worker_concurrency": concurrency,
            "pace_ms": pace_ms,
            "payload_kib": payload_kib,
            "sent": len(sent),
            "send_errors": send_errors,
            "delivered": len(delivered),
            "lost": len(wanted - delivered),
            "decode_errors": text.count("JSONDecodeError"),
            "worker_deaths": int(not alive) + text.count("Unrecoverable error"),
            "undecodable_set_aside": text.count("is not JSON was set aside"),
            "produce_seconds": round(produced_s, 2),
            "total_seconds": round(elapsed, 2),
        }
        if figures["worker_deaths"]:
            figures["worker_log_tail"] = "\n".join(line for line in text.splitlines() if "rror" in line)[-2000:]
        return figures
    finally:
        if "worker" in locals() and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        shutil.rmtree(var_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", default="atomicfs", choices=["atomicfs", "filesystem"])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pace-ms", type=float, default=200.0)
    parser.add_argument("--payload-kib", type=int, default=256)
    args = parser.parse_args()
    figures = soak(args.transport, args.messages, args.producers, args.concurrency, args.pace_ms, args.payload_kib)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
