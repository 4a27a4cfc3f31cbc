"""Each compatibility level, table-driven over HTTP: one compatible and one incompatible case per level.

Every case registers its history under NONE, switches the subject to the level, then registers the new
schema: compatible ones get an id, incompatible ones 409. The transitive cases pick a new schema that passes
against the latest version but not against the first, so only the transitive level refuses it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tableflow.schema.store import SchemaStore
from tests.schema_registry.schemas import (
    USER_V1,
    USER_WITH_EMAIL,
    USER_WITH_EMAIL_DEFAULT,
    field,
    json_object,
    record,
)
from tests.schema_registry.server import serve_registry

WITH_NAME = record(field("id", "long"), field("name", "string"))
WITH_NAME_DEFAULT = record(field("id", "long"), field("name", "string", ""))
EMAIL_NO_NAME = record(field("id", "long"), field("email", "string", ""))
EMAIL_AND_AGE = record(field("id", "long"), field("email", "string"), field("age", "int", 0))
EMAIL_DEFAULT_AND_AGE = record(field("id", "long"), field("email", "string", ""), field("age", "int", 0))
ID_AS_STRING = record(field("id", "string"))


@dataclass(frozen=True)
class Case:
    level: str
    history: tuple[str, ...]
    new: str
    compatible: bool
    schema_type: str = "AVRO"

    def __str__(self) -> str:
        return f"{self.level}-{self.schema_type}-{'ok' if self.compatible else 'refused'}"


AVRO_CASES = [
    Case("NONE", (USER_V1,), ID_AS_STRING, True),
    Case("BACKWARD", (USER_V1,), USER_WITH_EMAIL_DEFAULT, True),
    Case("BACKWARD", (USER_V1,), USER_WITH_EMAIL, False),
    Case("BACKWARD", (USER_V1, USER_WITH_EMAIL), EMAIL_AND_AGE, True),  # v1 is not compared
    Case("BACKWARD_TRANSITIVE", (USER_V1, USER_WITH_EMAIL_DEFAULT), EMAIL_DEFAULT_AND_AGE, True),
    Case("BACKWARD_TRANSITIVE", (USER_V1, USER_WITH_EMAIL), EMAIL_AND_AGE, False),
    Case("FORWARD", (USER_V1,), USER_WITH_EMAIL, True),
    Case("FORWARD", (WITH_NAME,), USER_V1, False),
    Case("FORWARD", (WITH_NAME, WITH_NAME_DEFAULT), USER_V1, True),  # v1 is not compared
    Case("FORWARD_TRANSITIVE", (USER_V1, USER_WITH_EMAIL_DEFAULT), USER_WITH_EMAIL, True),
    Case("FORWARD_TRANSITIVE", (WITH_NAME, WITH_NAME_DEFAULT), USER_V1, False),
    Case("FULL", (USER_V1,), USER_WITH_EMAIL_DEFAULT, True),
    Case("FULL", (USER_V1,), USER_WITH_EMAIL, False),
    Case("FULL", (WITH_NAME, WITH_NAME_DEFAULT), EMAIL_NO_NAME, True),  # v1 is not compared
    Case("FULL_TRANSITIVE", (USER_V1, USER_WITH_EMAIL_DEFAULT), EMAIL_DEFAULT_AND_AGE, True),
    Case("FULL_TRANSITIVE", (WITH_NAME, WITH_NAME_DEFAULT), EMAIL_NO_NAME, False),
]

INT_A = json_object({"a": "integer"})
NUMBER_A = json_object({"a": "number"})
A_AND_OPTIONAL_B = json_object({"a": "integer", "b": "string"})
A_AND_REQUIRED_B = json_object({"a": "integer", "b": "string"}, required=("b",))
REQUIRED_B_AND_C = json_object({"a": "integer", "b": "string", "c": "string"}, required=("b",))

JSON_CASES = [
    Case("NONE", (INT_A,), json_object({"a": "string"}), True, "JSON"),
    Case("BACKWARD", (INT_A,), NUMBER_A, True, "JSON"),  # integer widens to number
    Case("BACKWARD", (INT_A,), A_AND_REQUIRED_B, False, "JSON"),
    Case("BACKWARD", (NUMBER_A,), INT_A, False, "JSON"),
    Case("BACKWARD_TRANSITIVE", (INT_A, A_AND_REQUIRED_B), REQUIRED_B_AND_C, False, "JSON"),
    Case("BACKWARD", (INT_A, A_AND_REQUIRED_B), REQUIRED_B_AND_C, True, "JSON"),
    Case("FORWARD", (INT_A,), A_AND_REQUIRED_B, True, "JSON"),
    Case("FORWARD", (A_AND_REQUIRED_B,), A_AND_OPTIONAL_B, False, "JSON"),
    Case("FULL", (INT_A,), A_AND_OPTIONAL_B, True, "JSON"),
    Case("FULL", (INT_A,), NUMBER_A, False, "JSON"),
]


_subjects = itertools.count()


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaRegistryClient]:
    """One server for the whole table (each case has its own subject): starting one per case costs seconds."""
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('compat') / 'catalog.db'}")
    with serve_registry(SchemaStore(engine)) as url:
        client = SchemaRegistryClient({"url": url, "max.retries": 0})
        yield client
        client.close()
    engine.dispose()


@pytest.mark.parametrize("case", AVRO_CASES + JSON_CASES, ids=str)
def test_level(shared_client: SchemaRegistryClient, case: Case) -> None:
    client = shared_client
    subject = f"subject-{next(_subjects)}"
    client.set_compatibility(subject, "NONE")
    for schema in case.history:
        client.register_schema(subject, Schema(schema, case.schema_type))
    client.set_compatibility(subject, case.level)

    if case.compatible:
        client.register_schema(subject, Schema(case.new, case.schema_type))
        assert client.get_latest_version(subject).version == len(case.history) + 1
    else:
        with pytest.raises(SchemaRegistryError) as failure:
            client.register_schema(subject, Schema(case.new, case.schema_type))
        assert failure.value.error_code == 409
        assert case.level in failure.value.error_message
        assert client.get_versions(subject) == list(range(1, len(case.history) + 1))
