"""Run ``tableflow serve`` as a real subprocess on a loopback port, to kill it at hostile moments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from tableflow.broker import free_port


def write_config(path: Path, data_dir: Path, bootstrap: str, tables: list[dict[str, Any]], **extra: Any) -> int:
    """A service config for tests; fast group failover so a killed member is replaced quickly."""
    port = free_port()
    config = {
        "data_dir": str(data_dir),
        "kafka": {
            "bootstrap_servers": bootstrap,
            "properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
        },
        "server": {"host": "127.0.0.1", "port": port},
        "tables": tables,
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return port


class Service:
    """One ``tableflow serve`` process; always stopped on exit."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Service:
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tableflow.cli", "serve", "--config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}; see {self.log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"service did not answer within {timeout_s}s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        """SIGTERM: the service commits what it buffered and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
