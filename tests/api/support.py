"""Helpers for the management API tests: a running service, producing records, waiting, reading tables."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tableflow.config import load_config
from tableflow.lake import open_catalog
from tests.service import Service

T = TypeVar("T")

TOKENS = {"admin": "admin-secret", "writer": "writer-secret", "reader": "reader-secret"}
AUTH = {
    "enabled": True,
    "clients": [{"id": role, "secret": secret, "role": role} for role, secret in TOKENS.items()],
}


@dataclass
class Server:
    """A ``tableflow serve`` process and what tests need to talk to it."""

    service: Service
    data_dir: Path
    bootstrap: str
    file_tables: dict[str, str] = field(default_factory=dict)
    """identifier -> topic of the tables the config file defines."""

    @property
    def url(self) -> str:
        return self.service.url

    def client(self, role: str | None = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=90)

    def catalog(self) -> Catalog:
        """The catalog database the service writes, opened directly."""
        return open_catalog(load_config(None, data_dir=self.data_dir))

    def table(self, identifier: str) -> Table:
        return self.catalog().load_table(identifier)


def create_topic(bootstrap: str, partitions: int = 1, prefix: str = "api") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=30)
    return name


def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> None:
    """One record per batch: the embedded broker's high watermark is the last batch's base offset + 1."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=str(i).encode(), partition=i % partitions)
    assert producer.flush(30) == 0


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 60, what: str = "") -> T:
    """Poll ``read`` until ``done`` holds; fail with the last value seen."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {value}")
        time.sleep(0.3)
        value = read()
    return value


def status_of(client: httpx.Client, identifier: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/tables/{identifier}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["status"]
    return result


def caught_up(client: httpx.Client, identifier: str, records: int, timeout_s: float = 60) -> dict[str, Any]:
    """Wait until the table holds everything produced: lag 0 and ``records`` committed by this process."""
    return wait_for(
        lambda: status_of(client, identifier),
        lambda s: s["lag"] == 0 and s["records_total"] == records,
        timeout_s,
        f"{identifier} to catch up to {records} records",
    )


def rows(table: Table) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every row, sorted."""
    data = table.scan(selected_fields=("_kafka_partition", "_kafka_offset", "_kafka_value")).to_arrow()
    return sorted(
        zip(
            data["_kafka_partition"].to_pylist(),
            data["_kafka_offset"].to_pylist(),
            data["_kafka_value"].to_pylist(),
            strict=True,
        )
    )
