"""The store without HTTP: schema identity, the SchemaSource contract, persistence, concurrent writers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from tableflow.errors import DecodeError
from tableflow.schema.registry import RegisteredSchema, SchemaSource
from tableflow.schema.store import (
    Compatibility,
    IncompatibleSchema,
    InvalidCompatibilityLevel,
    InvalidSchema,
    InvalidSubject,
    InvalidVersion,
    ReferenceExists,
    Schema,
    SchemaReference,
    SchemaStore,
    SubjectCompatibilityNotConfigured,
    parse_version,
)
from tests.schema_registry.schemas import (
    USER_V1,
    USER_WITH_EMAIL,
    USER_WITH_EMAIL_DEFAULT,
    field,
    json_object,
    record,
)


def test_ids_start_at_one_and_follow_the_schemas_not_the_subjects(store: SchemaStore) -> None:
    assert store.register("a", Schema(USER_V1)).schema_id == 1
    assert store.register("b", Schema(USER_WITH_EMAIL_DEFAULT)).schema_id == 2
    second = store.register("a", Schema(USER_WITH_EMAIL_DEFAULT))
    assert (second.schema_id, second.version) == (2, 2)
    assert store.register("c", Schema(json_object({"a": "integer"}), "JSON")).schema_id == 3


def test_layout_differences_dedupe_but_meaningful_ones_do_not(store: SchemaStore) -> None:
    store.set_compatibility(None, Compatibility.NONE)
    base = {"type": "record", "name": "User", "namespace": "test", "fields": [{"name": "id", "type": "long"}]}
    schema_id = store.register("a", Schema(json.dumps(base))).schema_id
    same = [
        json.dumps(base, indent=2),
        json.dumps(dict(reversed(base.items()))),
        json.dumps({"type": "record", "name": "test.User", "fields": [{"type": "long", "name": "id"}]}),
    ]
    for text in same:
        assert store.register("a", Schema(text)).schema_id == schema_id, text
    different = [
        record(field("id", "long", 0)),
        record(field("id", {"type": "long", "logicalType": "timestamp-millis"})),
        record(field("id", "long"), name="Person"),
    ]
    ids = {store.register("a", Schema(text)).schema_id for text in different}
    assert len(ids) == 3
    assert schema_id not in ids
    json_id = store.register("j", Schema('{"type": "object", "required": []}', "JSON")).schema_id
    assert store.register("j", Schema('{ "required":[],"type":"object" }', "JSON")).schema_id == json_id


def test_store_is_a_schema_source(store: SchemaStore) -> None:
    source: SchemaSource = store
    schema_id = store.register("users", Schema(USER_V1)).schema_id

    assert source.get_schema(schema_id) == RegisteredSchema(schema_id, "AVRO", USER_V1)
    with pytest.raises(DecodeError, match="schema id 42 is not registered"):
        source.get_schema(42)


def test_ids_are_cached_because_they_never_change(engine: sa.Engine, store: SchemaStore) -> None:
    schema_id = store.register("users", Schema(USER_V1)).schema_id
    store.get_schema(schema_id)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM tableflow_registry_subject_versions"))
        conn.execute(sa.text("DELETE FROM tableflow_registry_schemas"))

    assert store.get_schema(schema_id).schema_str == USER_V1
    with pytest.raises(DecodeError):
        SchemaStore(engine).get_schema(schema_id)


def test_a_reopened_store_keeps_everything(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    first = SchemaStore(engine)
    first.register("users", Schema(USER_V1))
    first.register("users", Schema(USER_WITH_EMAIL_DEFAULT))
    first.register("gone", Schema(json_object({"a": "integer"}), "JSON"))
    first.delete_subject("gone")
    first.set_compatibility(None, Compatibility.FULL)
    first.set_compatibility("users", Compatibility.FORWARD_TRANSITIVE)
    engine.dispose()

    engine = sa.create_engine(db_url)
    reopened = SchemaStore(engine)
    assert reopened.subjects() == ["users"]
    assert reopened.subjects(deleted=True) == ["gone", "users"]
    assert reopened.versions("users") == [1, 2]
    assert reopened.version("users", None).schema_id == 2
    assert reopened.get_schema(3).schema_type == "JSON"
    assert reopened.get_compatibility() is Compatibility.FULL
    assert reopened.get_compatibility("users", default_to_global=False) is Compatibility.FORWARD_TRANSITIVE
    assert reopened.register("users", Schema(USER_V1)).version == 1  # still recognised, not re-added
    assert reopened.register("more", Schema(USER_WITH_EMAIL)).schema_id == 4
    engine.dispose()


def test_concurrent_stores_never_share_an_id_between_schemas(db_url: str, tmp_path: Path) -> None:
    engines = [sa.create_engine(db_url) for _ in range(2)]
    stores = [SchemaStore(engine) for engine in engines]
    stores[0].set_compatibility(None, Compatibility.NONE)
    per_writer = 15
    start = threading.Barrier(len(stores))
    results: dict[str, int] = {}
    failures: list[BaseException] = []

    def write(index: int) -> None:
        start.wait()
        try:
            for n in range(per_writer):
                text = record(field(f"w{index}_{n}", "long"))
                results[text] = stores[index].register("shared", Schema(text)).schema_id
                assert stores[index].register(f"own-{index}", Schema(text)).schema_id == results[text]
                common = stores[index].register("common", Schema(USER_V1)).schema_id
                results.setdefault(USER_V1, common)
                assert common == results[USER_V1]
        except BaseException as exc:  # handed to the main thread's assertion
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not failures, failures
    assert len(results) == len(stores) * per_writer + 1
    assert len(set(results.values())) == len(results)  # one id per schema, no id for two
    for text, schema_id in results.items():
        for store in stores:
            assert store.get_schema(schema_id).schema_str == text
    shared = stores[1].versions("shared")
    assert shared == list(range(1, len(stores) * per_writer + 1))
    assert {stores[0].version("shared", v).schema_id for v in shared} == set(results.values()) - {results[USER_V1]}
    assert stores[1].versions("common") == [1]
    for engine in engines:
        engine.dispose()


def test_compatibility_levels_resolve_subject_then_global_then_backward(store: SchemaStore) -> None:
    assert store.get_compatibility() is Compatibility.BACKWARD
    assert store.get_compatibility("users") is Compatibility.BACKWARD
    with pytest.raises(SubjectCompatibilityNotConfigured) as failure:
        store.get_compatibility("users", default_to_global=False)
    assert failure.value.error_code == 40408

    store.set_compatibility(None, Compatibility.FORWARD)
    store.set_compatibility("users", Compatibility.NONE)
    store.set_compatibility("users", Compatibility.FULL)
    assert store.get_compatibility("users") is Compatibility.FULL
    assert store.get_compatibility("others") is Compatibility.FORWARD
    assert store.delete_compatibility("users") is Compatibility.FULL
    assert store.get_compatibility("users") is Compatibility.FORWARD
    assert store.delete_compatibility(None) is Compatibility.FORWARD
    assert store.get_compatibility() is Compatibility.BACKWARD


def test_incompatible_schema_carries_the_code_and_the_broken_rule(store: SchemaStore) -> None:
    store.register("users", Schema(USER_V1))
    with pytest.raises(IncompatibleSchema) as failure:
        store.register("users", Schema(USER_WITH_EMAIL))
    assert failure.value.error_code == 409
    assert "field 'email'" in str(failure.value)
    assert "give that field a default" in str(failure.value)

    store.register("people", Schema(json_object({"a": "integer"}), "JSON"))
    with pytest.raises(IncompatibleSchema, match=r"#/properties/b: 'b' is required by the reader"):
        store.register("people", Schema(json_object({"a": "integer", "b": "string"}, ("b",)), "JSON"))
    with pytest.raises(IncompatibleSchema, match="schema type changed from AVRO to JSON"):
        store.register("users", Schema(json_object({"a": "integer"}), "JSON"))


def test_nested_json_properties_and_items_are_compared(store: SchemaStore) -> None:
    old = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "integer"}}}}
    new = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}
    store.register("nested", Schema(json.dumps(old), "JSON"))

    problems = store.check_compatibility("nested", Schema(json.dumps(new), "JSON"))

    assert len(problems) == 1
    assert "#/properties/tags/items" in problems[0]


def test_avro_references_resolve_through_the_store(store: SchemaStore) -> None:
    country = SchemaReference("test.Country", "country", 1)
    store.register("country", Schema(record(field("code", "string"), name="Country")))
    for name in ("Address", "Phone"):  # both need Country: the customer below reaches it twice
        store.register(name.lower(), Schema(record(field("country", "test.Country"), name=name), "AVRO", (country,)))
    customer = record(field("home", "test.Address"), field("phone", "test.Phone"), name="Customer")
    references = (SchemaReference("test.Address", "address", 1), SchemaReference("test.Phone", "phone", 1))

    registered = store.register("customer", Schema(customer, "AVRO", references))

    assert store.schema_by_id(registered.schema_id).references == references
    with pytest.raises(InvalidSchema, match="not registered; register that schema first"):
        store.register("customer", Schema(customer, "AVRO", (SchemaReference("test.Address", "nowhere", 1),)))
    with pytest.raises(ReferenceExists, match="referenced by subject 'address' version 1"):
        store.delete_subject("country")
    with pytest.raises(ReferenceExists, match="referenced by subject 'customer' version 1"):
        store.delete_version("address", 1)
    store.delete_subject("customer")
    assert store.delete_version("address", 1) == 1


def test_edge_validation() -> None:
    assert parse_version("latest") is None
    assert parse_version("-1") is None
    assert parse_version("3") == 3
    for bad in ("0", "x", "2147483648", "1.5"):
        with pytest.raises(InvalidVersion):
            parse_version(bad)
    assert Compatibility.parse("full_transitive") is Compatibility.FULL_TRANSITIVE
    with pytest.raises(InvalidCompatibilityLevel, match="Valid values are NONE, BACKWARD"):
        Compatibility.parse("SIDEWAYS")


def test_subjects_must_be_printable_and_short(store: SchemaStore) -> None:
    for bad in ("", "a\nb", "x" * 256):
        with pytest.raises(InvalidSubject):
            store.register(bad, Schema(USER_V1))
