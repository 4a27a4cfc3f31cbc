"""An S3 warehouse on a real S3-API server (moto in server mode, loopback only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest
from moto.server import ThreadedMotoServer
from pyiceberg.catalog.sql import SqlCatalog

from catalog.store import CatalogStore
from tableflow.config import Settings
from tests.catalog.conftest import StartServer
from tests.catalog.server import duckdb_attach
from tests.ingest import ingest_json

BUCKET = "lake-bucket"
CREDENTIALS = {"s3.access-key-id": "tableflow", "s3.secret-access-key": "tableflow-secret"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_properties(s3_endpoint: str, data_dir: Path) -> dict[str, str]:
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["s3.access-key-id"],
        aws_secret_access_key=CREDENTIALS["s3.secret-access-key"],
    )
    if BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    return {
        "type": "sql",
        "uri": f"sqlite:///{data_dir.resolve()}/catalog.db",
        "warehouse": f"s3://{BUCKET}/{data_dir.parent.name}",
        "s3.endpoint": s3_endpoint,
        "s3.region": "us-east-1",
        "s3.path-style-access": "true",
        **CREDENTIALS,
    }


def keys(endpoint: str, prefix: str) -> list[str]:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["s3.access-key-id"],
        aws_secret_access_key=CREDENTIALS["s3.secret-access-key"],
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_ingested_table_on_s3_reads_through_the_catalog(
    start_server: StartServer,
    s3_properties: dict[str, str],
    s3_endpoint: str,
    make_topic: Any,
    kafka_settings: dict[str, Any],
) -> None:
    server = start_server(catalog={"properties": s3_properties})
    # The real ingest pipeline writes the topic to the S3 warehouse through the catalog the server reads.
    ingest_json(server.backing, kafka_settings, make_topic(), "kafka.payments", 25, server.settings.data_dir)
    prefix = s3_properties["warehouse"].removeprefix(f"s3://{BUCKET}/")
    assert any(key.endswith(".parquet") for key in keys(s3_endpoint, prefix))

    with server.http() as http:
        config = http.get("/v1/namespaces/kafka/tables/payments").json()["config"]
    assert config == {
        "s3.endpoint": s3_endpoint,
        "s3.path-style-access": "true",
        "s3.region": "us-east-1",
        "client.region": "us-east-1",
        **CREDENTIALS,
    }

    # The client knows nothing about S3: everything it needs comes from LoadTableResult.config.
    client = server.client()
    assert client.load_table("kafka.payments").scan().to_arrow().num_rows == 25
    client.create_namespace("sales")
    table = client.create_table("sales.orders", schema=pa.schema([("id", pa.int64())]))
    table.append(pa.table({"id": pa.array([1, 2, 3], pa.int64())}))
    assert client.load_table("sales.orders").scan().to_arrow()["id"].to_pylist() == [1, 2, 3]
    assert any(key.endswith(".parquet") for key in keys(s3_endpoint, f"{prefix}/sales/orders/"))
    client.close()

    # DuckDB gets the same storage settings from the catalog and needs no S3 secret of its own.
    con = duckdb_attach(server.uri)
    try:
        assert con.execute("SELECT count(*) FROM lake.kafka.payments").fetchone() == (25,)
        assert con.execute("SELECT sum(id) FROM lake.sales.orders").fetchone() == (6,)
    finally:
        con.close()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, {}),
        ({"s3.endpoint": "http://minio:9000"}, {"s3.endpoint": "http://minio:9000"}),
        ({"s3.access-key-id": "only-half"}, {}),
        ({"client.region": "eu-west-1"}, {"s3.region": "eu-west-1", "client.region": "eu-west-1"}),
    ],
)
def test_storage_hints_only_when_fully_configured(
    data_dir: Path, extra: dict[str, str], expected: dict[str, str]
) -> None:
    catalog = SqlCatalog("tableflow", uri=f"sqlite:///{data_dir}/c.db", warehouse="s3://bucket/wh", **extra)
    store = CatalogStore(catalog, Settings(data_dir=data_dir))
    assert store.storage_config("s3://bucket/wh/ns/t") == expected
    assert store.storage_config(f"file://{data_dir}/ns/t") == {}
    catalog.close()
