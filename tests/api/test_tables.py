"""The tables resource against a running server and a real broker: create, watch, pause, resume, change, delete."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.exceptions import NoSuchTableError

from tests.api.support import Server, caught_up, create_topic, produce, rows, status_of, wait_for


def _values(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(count)]


def _identifier(topic: str) -> str:
    return f"kafka.{topic.replace('-', '_')}"


def test_create_over_rest_then_lag_falls_to_zero(server: Server) -> None:
    topic = create_topic(server.bootstrap, partitions=2)
    identifier = _identifier(topic)
    with server.client() as api:
        created = api.post("/api/v1/tables", json={"topic": topic, "format": "raw", "commit_interval_s": 0.5})
        assert created.status_code == 201, created.text
        assert created.headers["location"].endswith(f"/api/v1/tables/{identifier}")
        body = created.json()
        assert (body["identifier"], body["source"], body["config"]["topic"]) == (identifier, "api", topic)
        assert body["config"]["on_error"] == "dlq"  # the config file's defaults apply
        assert body["status"]["state"] in ("starting", "running")

        produce(server.bootstrap, topic, _values("v", 40), partitions=2)
        status = caught_up(api, identifier, 40)
        assert status["state"] == "running"
        assert status["partitions"] == [
            {"partition": 0, "committed_offset": 20, "high_watermark": 20, "lag": 0},
            {"partition": 1, "committed_offset": 20, "high_watermark": 20, "lag": 0},
        ]
        assert status["bytes_total"] == sum(len(v) for v in _values("v", 40))
        assert status["dlq_records_total"] == 0
        assert status["last_error"] is None
        assert status["last_commit_at"] is not None
        snapshot = server.table(identifier).current_snapshot()
        assert snapshot is not None and status["last_snapshot_id"] == snapshot.snapshot_id

        listed = [item["identifier"] for item in api.get("/api/v1/tables").json()]
        assert identifier in listed and "kafka.file_owned" in listed
    assert sorted(value for *_, value in rows(server.table(identifier))) == sorted(_values("v", 40))


def test_pause_holds_snapshots_and_resume_catches_up(server: Server) -> None:
    topic = create_topic(server.bootstrap)
    identifier = _identifier(topic)
    with server.client() as api:
        api.post("/api/v1/tables", json={"topic": topic, "format": "raw", "commit_interval_s": 0.3})
        produce(server.bootstrap, topic, _values("a", 10), partitions=1)
        caught_up(api, identifier, 10)

        paused = api.post(f"/api/v1/tables/{identifier}/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json()["status"]["state"] == "paused"
        snapshots = len(server.table(identifier).metadata.snapshots)
        produce(server.bootstrap, topic, _values("b", 10), partitions=1)
        wait_for(lambda: status_of(api, identifier), lambda s: s["lag"] == 10, 30, "the lag to show the new records")
        time.sleep(2)  # several commit intervals: a running worker would have committed by now
        status = status_of(api, identifier)
        assert (status["state"], status["lag"], status["records_total"]) == ("paused", 10, 10)
        assert len(server.table(identifier).metadata.snapshots) == snapshots

        resumed = api.post(f"/api/v1/tables/{identifier}/resume")
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["status"]["state"] == "running"
        caught_up(api, identifier, 20)
    assert sorted(value for *_, value in rows(server.table(identifier))) == sorted(_values("a", 10) + _values("b", 10))


def test_delete_with_purge_drops_the_table_its_dlq_and_files(server: Server) -> None:
    topic = create_topic(server.bootstrap)
    identifier = _identifier(topic)
    names = (identifier, f"{identifier}__dlq")
    with server.client() as api:
        api.post("/api/v1/tables", json={"topic": topic, "format": "raw", "commit_interval_s": 0.3})
        produce(server.bootstrap, topic, _values("d", 5), partitions=1)
        caught_up(api, identifier, 5)
        # Raw records never fail to decode: a dead-letter table with a data file stands in for a real one.
        server.catalog().create_table(names[1], schema=pa.schema([pa.field("x", pa.int64())])).append(
            pa.table({"x": [1]})
        )
        locations = [Path(server.table(name).location().removeprefix("file://")) for name in names]
        assert all(any(location.rglob("*.parquet")) for location in locations)

        deleted = api.delete(f"/api/v1/tables/{identifier}", params={"purge": "true"})
        assert deleted.status_code == 204, deleted.text
        assert api.get(f"/api/v1/tables/{identifier}").status_code == 404
        assert api.delete(f"/api/v1/tables/{identifier}").json()["error"]["code"] == "not_found"
    for name in names:
        with pytest.raises(NoSuchTableError):
            server.table(name)
    assert not any(location.exists() for location in locations)


def test_delete_keeps_the_table_and_a_new_create_continues_exactly(server: Server) -> None:
    topic = create_topic(server.bootstrap)
    identifier = _identifier(topic)
    config = {"topic": topic, "format": "raw", "commit_interval_s": 0.3}
    with server.client() as api:
        api.post("/api/v1/tables", json=config)
        produce(server.bootstrap, topic, _values("first", 8), partitions=1)
        caught_up(api, identifier, 8)
        assert api.delete(f"/api/v1/tables/{identifier}").status_code == 204
        assert identifier not in [item["identifier"] for item in api.get("/api/v1/tables").json()]

        produce(server.bootstrap, topic, _values("second", 8), partitions=1)
        again = api.post("/api/v1/tables", json=config)
        assert again.status_code == 201, again.text
        caught_up(api, identifier, 8)  # only the new records: the table's positions carried over
    data = rows(server.table(identifier))
    assert [(p, o) for p, o, _ in data] == [(0, offset) for offset in range(16)]


def test_patch_restarts_the_worker_with_the_new_settings(server: Server) -> None:
    topic = create_topic(server.bootstrap)
    identifier = _identifier(topic)
    with server.client() as api:
        api.post("/api/v1/tables", json={"topic": topic, "format": "raw", "properties": {"owner": "a"}})
        patched = api.patch(
            f"/api/v1/tables/{identifier}",
            json={
                "commit_interval_s": 0.3,
                "partition_by": ["day(_kafka_timestamp)"],
                "properties": {"owner": "b", "write.parquet.compression-codec": "snappy"},
            },
        )
        assert patched.status_code == 200, patched.text
        config = patched.json()["config"]
        assert config["commit_interval_s"] == 0.3 and config["partition_by"] == ["day(_kafka_timestamp)"]
        assert config["format"] == "raw"  # untouched fields stay
        properties = server.table(identifier).properties
        assert (properties["owner"], properties["write.parquet.compression-codec"]) == ("b", "snappy")

        produce(server.bootstrap, topic, _values("p", 6), partitions=1)
        caught_up(api, identifier, 6)  # at the new 0.3 s interval, not the default 10 s
    table = server.table(identifier)
    assert [f.name for f in table.spec().fields] == ["_kafka_timestamp_day"]
    assert len(rows(table)) == 6


def test_file_tables_are_read_only_here_but_can_be_paused(server: Server) -> None:
    with server.client() as api:
        table = api.get("/api/v1/tables/kafka.file_owned").json()
        assert table["source"] == "file"
        for response in (
            api.patch("/api/v1/tables/kafka.file_owned", json={"commit_interval_s": 1}),
            api.delete("/api/v1/tables/kafka.file_owned"),
        ):
            assert response.status_code == 409
            error = response.json()["error"]
            assert error["code"] == "file_owned" and "config file" in error["message"]
        assert api.post("/api/v1/tables/kafka.file_owned/pause").json()["status"]["state"] == "paused"
        assert api.post("/api/v1/tables/kafka.file_owned/resume").json()["status"]["state"] == "running"


def test_create_topic_when_asked(server: Server) -> None:
    topic = f"created-{time.monotonic_ns()}"
    with server.client() as api:
        created = api.post(
            "/api/v1/tables", json={"topic": topic, "format": "raw", "create_topic": True, "partitions": 3}
        )
        assert created.status_code == 201, created.text
        identifier = created.json()["identifier"]
        partitions = wait_for(
            lambda: status_of(api, identifier)["partitions"], lambda p: len(p) == 3, 30, "three partitions"
        )
        assert all(p["high_watermark"] == 0 and p["lag"] == 0 for p in partitions)
        assert api.delete(f"/api/v1/tables/{identifier}", params={"purge": "true"}).status_code == 204


def test_the_api_is_documented_at_docs(server: Server) -> None:
    with server.client(role=None) as anonymous:
        assert anonymous.get("/docs").status_code == 200
        paths = anonymous.get("/openapi.json").json()["paths"]
    assert {"/api/v1/tables", "/api/v1/tables/{table}", "/api/v1/tables/{table}/pause", "/metrics"} <= set(paths)
    assert paths["/api/v1/tables"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
