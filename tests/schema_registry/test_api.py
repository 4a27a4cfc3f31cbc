"""The registry's HTTP API, driven by confluent-kafka's own client and serializers (raw HTTP for shapes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    ServerConfig,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.schema_registry_client import ConfigCompatibilityLevel
from confluent_kafka.serialization import MessageField, SerializationContext

from tableflow.schema.store import SchemaStore
from tests.schema_registry.schemas import (
    USER_V1,
    USER_WITH_EMAIL,
    USER_WITH_EMAIL_DEFAULT,
    field,
    json_object,
    record,
)

V1_MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


def error_code(call: Callable[[], Any]) -> int:
    """The Confluent error code a call fails with, as the client reports it."""
    with pytest.raises(SchemaRegistryError) as failure:
        call()
    return failure.value.error_code


def test_avro_serializer_round_trip(client: SchemaRegistryClient, store: SchemaStore) -> None:
    serializer = AvroSerializer(client, USER_WITH_EMAIL_DEFAULT)
    deserializer = AvroDeserializer(client)
    context = SerializationContext("users", MessageField.VALUE)
    user = {"id": 7, "email": "ada@example.com"}

    payload = serializer(user, context)

    assert deserializer(payload, context) == user
    schema_id = int.from_bytes(payload[1:5], "big")
    assert client.get_latest_version("users-value").schema_id == schema_id
    assert json.loads(store.get_schema(schema_id).schema_str) == json.loads(USER_WITH_EMAIL_DEFAULT)


def test_json_serializer_round_trip(client: SchemaRegistryClient) -> None:
    schema = json_object({"id": "integer", "name": "string"}, required=("id",))
    serializer = JSONSerializer(schema, client)
    deserializer = JSONDeserializer(None, schema_registry_client=client)
    context = SerializationContext("people", MessageField.VALUE)
    person = {"id": 1, "name": "Grace"}

    payload = serializer(person, context)

    assert deserializer(payload, context) == person
    registered = client.get_latest_version("people-value")
    assert registered.schema.schema_type == "JSON"
    assert json.loads(registered.schema.schema_str or "") == json.loads(schema)


def test_register_is_idempotent_and_ids_are_global(client: SchemaRegistryClient, registry_url: str) -> None:
    first = client.register_schema("a-value", Schema(USER_V1, "AVRO"))
    assert first == 1
    assert client.register_schema("a-value", Schema(USER_V1, "AVRO")) == first
    respaced = json.dumps(json.loads(USER_V1), indent=4, sort_keys=True)
    assert SchemaRegistryClient({"url": registry_url}).register_schema("a-value", Schema(respaced, "AVRO")) == first
    assert client.register_schema("b-value", Schema(USER_V1, "AVRO")) == first
    assert client.register_schema("a-value", Schema(USER_WITH_EMAIL_DEFAULT, "AVRO")) == 2

    assert client.get_versions("a-value") == [1, 2]
    assert client.get_versions("b-value") == [1]
    assert client.get_subjects() == ["a-value", "b-value"]
    assert sorted(client.get_subjects_by_schema_id(first)) == ["a-value", "b-value"]
    pairs = {(v.subject, v.version) for v in client.get_schema_versions(first)}
    assert pairs == {("a-value", 1), ("b-value", 1)}


def test_lookup_versions_latest_and_ids(client: SchemaRegistryClient, registry_url: str) -> None:
    client.register_schema("users", Schema(USER_V1, "AVRO"))
    client.register_schema("users", Schema(USER_WITH_EMAIL_DEFAULT, "AVRO"))

    found = client.lookup_schema("users", Schema(USER_V1, "AVRO"))
    assert (found.subject, found.version, found.schema_id) == ("users", 1, 1)
    latest = client.get_latest_version("users")
    assert (latest.version, latest.schema_id) == (2, 2)
    assert client.get_version("users", 1).schema_id == 1
    assert client.get_schema(2).schema_str == USER_WITH_EMAIL_DEFAULT
    assert client.get_schema_types() == ["AVRO", "JSON"]

    raw = httpx.get(f"{registry_url}/subjects/users/versions/latest/schema")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith(V1_MEDIA_TYPE)
    assert raw.text == USER_WITH_EMAIL_DEFAULT
    assert httpx.get(f"{registry_url}/schemas/ids/1/schema").text == USER_V1
    assert httpx.get(f"{registry_url}/subjects/users/versions/1").json() == {
        "subject": "users",
        "version": 1,
        "id": 1,
        "schema": USER_V1,
    }
    assert httpx.get(f"{registry_url}/subjects", params={"offset": 0, "limit": 1}).json() == ["users"]


def test_lookup_and_read_errors(client: SchemaRegistryClient) -> None:
    client.register_schema("users", Schema(USER_V1, "AVRO"))

    assert error_code(lambda: client.lookup_schema("users", Schema(USER_WITH_EMAIL, "AVRO"))) == 40403
    assert error_code(lambda: client.lookup_schema("nobody", Schema(USER_V1, "AVRO"))) == 40401
    assert error_code(lambda: client.get_versions("nobody")) == 40401
    assert error_code(lambda: client.get_version("users", 5)) == 40402
    assert error_code(lambda: client.get_version("users", 0)) == 42202
    assert error_code(lambda: client.get_version("users", "first")) == 42202  # type: ignore[arg-type]
    assert error_code(lambda: client.get_schema(99)) == 40403


def test_invalid_schemas_answer_42201_with_the_parser_message(client: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as failure:
        client.register_schema("bad", Schema('{"type": "record", "name": "X", "fields": [{"name": "a"}]}', "AVRO"))
    assert failure.value.error_code == 42201
    assert "missing 'type'" in failure.value.error_message

    assert error_code(lambda: client.register_schema("bad", Schema("{not json", "AVRO"))) == 42201
    assert error_code(lambda: client.register_schema("bad", Schema('{"type": 12}', "JSON"))) == 42201
    with pytest.raises(SchemaRegistryError) as failure:
        client.register_schema("bad", Schema('syntax = "proto3";', "PROTOBUF"))
    assert failure.value.error_code == 42201
    assert "PROTOBUF" in failure.value.error_message


def test_soft_then_permanent_version_deletes(client: SchemaRegistryClient) -> None:
    client.register_schema("users", Schema(USER_V1, "AVRO"))
    client.register_schema("users", Schema(USER_WITH_EMAIL_DEFAULT, "AVRO"))

    assert error_code(lambda: client.delete_version("users", 1, permanent=True)) == 40407
    assert client.delete_version("users", 1) == 1
    assert error_code(lambda: client.delete_version("users", 1)) == 40406
    assert client.get_versions("users") == [2]
    assert client.get_versions("users", deleted=True) == [1, 2]
    assert client.get_version("users", 1, deleted=True).schema_id == 1
    assert client.delete_version("users", 1, permanent=True) == 1
    assert error_code(lambda: client.delete_version("users", 1, permanent=True)) == 40402
    assert error_code(lambda: client.delete_version("nobody", 1)) == 40401
    # a soft-deleted schema registered again is a new version, under its old id
    assert client.register_schema("users", Schema(USER_V1, "AVRO")) == 1
    assert client.get_versions("users") == [2, 3]


def test_soft_then_permanent_subject_deletes(client: SchemaRegistryClient, registry_url: str) -> None:
    client.register_schema("users", Schema(USER_V1, "AVRO"))
    client.register_schema("users", Schema(USER_WITH_EMAIL_DEFAULT, "AVRO"))
    client.register_schema("others", Schema(USER_V1, "AVRO"))

    assert error_code(lambda: client.delete_subject("users", permanent=True)) == 40405
    assert client.delete_subject("users") == [1, 2]
    assert error_code(lambda: client.delete_subject("users")) == 40404
    assert client.get_subjects() == ["others"]
    assert client.get_subjects(deleted=True) == ["others", "users"]
    assert error_code(lambda: client.get_versions("users")) == 40401
    assert client.delete_subject("users", permanent=True) == [1, 2]
    assert error_code(lambda: client.delete_subject("users", permanent=True)) == 40401
    assert client.get_subjects(deleted=True) == ["others"]

    fresh = SchemaRegistryClient({"url": registry_url})
    assert fresh.get_schema(2).schema_str == USER_WITH_EMAIL_DEFAULT  # ids outlive their versions
    assert fresh.get_subjects_by_schema_id(2) == []
    assert fresh.register_schema("users", Schema(USER_WITH_EMAIL_DEFAULT, "AVRO")) == 2
    assert fresh.get_versions("users") == [1]


def test_compatibility_config(client: SchemaRegistryClient, registry_url: str) -> None:
    assert client.get_compatibility() == "BACKWARD"
    answer: object = client.set_compatibility(level="full")  # typed str, but it is the response body
    assert answer == {"compatibility": "FULL"}
    assert client.get_compatibility() == "FULL"

    assert error_code(lambda: client.get_compatibility("users")) == 40408
    subject_level = httpx.get(f"{registry_url}/config/users", params={"defaultToGlobal": "true"})
    assert subject_level.json() == {"compatibilityLevel": "FULL"}
    client.set_config("users", ServerConfig(compatibility=ConfigCompatibilityLevel.NONE))
    assert client.get_config("users").compatibility_level == ConfigCompatibilityLevel.NONE
    assert client.delete_config("users").compatibility_level == ConfigCompatibilityLevel.NONE
    assert error_code(lambda: client.delete_config("users")) == 40401

    assert error_code(lambda: client.set_compatibility(level="SIDEWAYS")) == 42203
    assert error_code(lambda: client.set_compatibility("users", level="SIDEWAYS")) == 42203
    assert client.delete_config().compatibility_level == ConfigCompatibilityLevel.FULL
    assert client.get_compatibility() == "BACKWARD"
    assert client.get_global_mode() == "READWRITE"


def test_incompatible_registration_answers_409_naming_the_field(client: SchemaRegistryClient) -> None:
    client.register_schema("users", Schema(USER_V1, "AVRO"))

    with pytest.raises(SchemaRegistryError) as failure:
        client.register_schema("users", Schema(USER_WITH_EMAIL, "AVRO"))

    assert failure.value.http_status_code == 409
    assert failure.value.error_code == 409
    message = failure.value.error_message
    assert "field 'email'" in message
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in message
    assert "BACKWARD" in message


def test_compatibility_check_endpoint(client: SchemaRegistryClient, registry_url: str) -> None:
    client.register_schema("users", Schema(USER_V1, "AVRO"))

    assert client.test_compatibility("users", Schema(USER_WITH_EMAIL_DEFAULT, "AVRO")) is True
    assert client.test_compatibility("users", Schema(USER_WITH_EMAIL, "AVRO"), version=1) is False
    assert client.test_compatibility_all_versions("users", Schema(USER_WITH_EMAIL, "AVRO")) is False
    assert client.test_compatibility("fresh", Schema(USER_WITH_EMAIL, "AVRO")) is True  # nothing to break

    verbose = httpx.post(
        f"{registry_url}/compatibility/subjects/users/versions/1",
        params={"verbose": "true"},
        json={"schema": USER_WITH_EMAIL},
    ).json()
    assert verbose["is_compatible"] is False
    assert any("field 'email'" in message for message in verbose["messages"])
    assert error_code(lambda: client.test_compatibility("users", Schema(USER_V1, "AVRO"), version=9)) == 40402
    assert error_code(lambda: client.test_compatibility("nobody", Schema(USER_V1, "AVRO"), version=1)) == 40401
    assert error_code(lambda: client.test_compatibility("users", Schema("{", "AVRO"))) == 42201


def test_references_are_resolved_stored_and_returned(client: SchemaRegistryClient) -> None:
    address = record(field("city", "string"), name="Address")
    client.register_schema("address", Schema(address, "AVRO"))
    customer = record(field("id", "long"), field("home", "test.Address"), name="Customer")
    reference = SchemaReference("test.Address", "address", 1)

    schema_id = client.register_schema("customer", Schema(customer, "AVRO", [reference]))

    fetched = client.get_schema(schema_id)
    assert fetched.references == [reference]
    missing = SchemaReference("test.Address", "address", 2)
    assert error_code(lambda: client.register_schema("other", Schema(customer, "AVRO", [missing]))) == 42201
    assert error_code(lambda: client.register_schema("other", Schema(customer, "AVRO"))) == 42201
    assert error_code(lambda: client.delete_subject("address")) == 42206


def test_http_edges_answer_in_confluent_shape(registry_url: str) -> None:
    unknown_path = httpx.get(f"{registry_url}/no/such/path")
    assert unknown_path.status_code == 404
    assert unknown_path.json()["error_code"] == 404

    missing_schema = httpx.post(f"{registry_url}/subjects/users/versions", json={"schemaType": "AVRO"})
    assert missing_schema.status_code == 422
    body = missing_schema.json()
    assert set(body) == {"error_code", "message"}
    assert "schema" in body["message"]

    for media_type in ("application/vnd.schemaregistry+json", "application/json", V1_MEDIA_TYPE):
        accepted = httpx.post(
            f"{registry_url}/subjects/users/versions",
            content=json.dumps({"schema": USER_V1}),
            headers={"Content-Type": media_type},
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json() == {"id": 1}
    wrong_type = httpx.post(
        f"{registry_url}/subjects/users/versions", content=USER_V1, headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert wrong_type.json()["error_code"] == 415

    contracts = httpx.post(
        f"{registry_url}/subjects/users/versions", json={"schema": USER_V1, "ruleSet": {"domainRules": []}}
    )
    assert contracts.json()["error_code"] == 42201
    bad_subject = httpx.put(f"{registry_url}/config/{'x' * 300}", json={"compatibility": "NONE"})
    assert bad_subject.json()["error_code"] == 42208
