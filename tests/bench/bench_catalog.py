"""Catalog benchmark: loadTable and commit throughput and latency over real HTTP.

Run with ``python -m tests.bench.bench_catalog``. The server runs in its own process (as in production) on a
loopback port with the embedded SQLite catalog; clients are threads with keep-alive HTTP connections. Each
scenario runs for a fixed time, with 1 and with 16 concurrent clients. Commits are ``set-properties`` updates,
one table per client, so every request writes a metadata file and swaps the pointer in the database.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa

from tableflow.config import Settings
from tableflow.lake import open_catalog

SECONDS_PER_SCENARIO = 5.0
CONCURRENCY = (1, 16)
ROOT = Path(__file__).resolve().parents[2]

_SERVER = """
import sys
import uvicorn
from tableflow.config import Settings
from tableflow.lake import open_catalog
from tests.catalog.server import service_app
settings = Settings(data_dir=sys.argv[1])
app = service_app(open_catalog(settings), settings)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


@dataclass
class Result:
    name: str
    clients: int
    latencies: list[float]
    failures: int
    seconds: float

    def line(self) -> str:
        ordered = sorted(self.latencies)

        def pct(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

        rate = len(ordered) / self.seconds
        return (
            f"{self.name:<10} clients={self.clients:<3} {rate:8.1f} req/s   p50 {pct(0.50):7.2f} ms   "
            f"p99 {pct(0.99):7.2f} ms   requests {len(ordered):>6}   failed {self.failures}"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare(data_dir: Path) -> None:
    """One table with a history to load, and one table per committing client."""
    catalog = open_catalog(Settings(data_dir=data_dir))
    catalog.create_namespace("bench")
    data = pa.table({"id": pa.array(range(100), pa.int64()), "name": [f"n{i}" for i in range(100)]})
    table = catalog.create_table("bench.load", schema=data.schema)
    for _ in range(10):
        table.append(data)
    for client in range(max(CONCURRENCY)):
        catalog.create_table(f"bench.commit_{client}", schema=data.schema)
    catalog.close()


def _run(name: str, clients: int, request: Callable[[httpx.Client, int], bool], base: str) -> Result:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    deadline = time.monotonic() + SECONDS_PER_SCENARIO

    def worker(index: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                ok = request(http, index)
                if ok:
                    latencies[index].append(time.perf_counter() - started)
                else:
                    failures[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SECONDS_PER_SCENARIO + 120)
    elapsed = time.monotonic() - started
    return Result(name, clients, [x for per in latencies for x in per], sum(failures), elapsed)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        data_dir = Path(tmp)
        _prepare(data_dir)
        port = _free_port()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        server = subprocess.Popen([sys.executable, "-c", _SERVER, str(data_dir), str(port)], cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{port}/iceberg/v1/tableflow"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/iceberg/v1/config", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the catalog server did not start") from None
                    time.sleep(0.1)

            uuids = {
                i: httpx.get(f"{base}/namespaces/bench/tables/commit_{i}").json()["metadata"]["table-uuid"]
                for i in range(max(CONCURRENCY))
            }
            sequence = itertools.count()

            def load(http: httpx.Client, _index: int) -> bool:
                return http.get("/namespaces/bench/tables/load").status_code == 200

            def commit(http: httpx.Client, index: int) -> bool:
                body = {
                    "requirements": [{"type": "assert-table-uuid", "uuid": uuids[index]}],
                    "updates": [{"action": "set-properties", "updates": {"bench.n": str(next(sequence))}}],
                }
                return http.post(f"/namespaces/bench/tables/commit_{index}", json=body).status_code == 200

            print(f"catalog benchmark: {SECONDS_PER_SCENARIO:.0f} s per scenario, SQLite catalog, files on disk")
            for name, request in (("loadTable", load), ("commit", commit)):
                for clients in CONCURRENCY:
                    print(_run(name, clients, request, base).line(), flush=True)
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=15)


if __name__ == "__main__":
    main()
