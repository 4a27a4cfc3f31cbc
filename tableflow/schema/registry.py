"""Where the pipeline gets writer schemas by id: an external Confluent-compatible registry or the embedded one.

Both sides look the same to the decoders: ``SchemaSource.get_schema(schema_id)``. The embedded store
(``tableflow.schema.store``) is read in-process; the external one through confluent-kafka's SchemaRegistryClient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tableflow.config import SchemaRegistrySettings
from tableflow.errors import DecodeError, SchemaError


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as stored under a global id: its type (``AVRO``, ``JSON``, ``PROTOBUF``) and text."""

    schema_id: int
    schema_type: str
    schema_str: str


class SchemaSource(Protocol):
    def get_schema(self, schema_id: int) -> RegisteredSchema:
        """The schema with this global id; DecodeError when no such id exists, SchemaError when unreachable."""
        ...


class RemoteRegistry:
    """An external Confluent-compatible registry, through confluent-kafka's client (which caches by id)."""

    def __init__(self, settings: SchemaRegistrySettings) -> None:
        self._client = SchemaRegistryClient(settings.client_config())
        self._url = settings.url

    def get_schema(self, schema_id: int) -> RegisteredSchema:
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError(
                    f"schema id {schema_id} is not registered in {self._url}; register the writer's schema "
                    "or check that producers and Tableflow use the same registry"
                ) from exc
            raise SchemaError(f"schema registry {self._url} answered {exc}") from exc
        except Exception as exc:
            raise SchemaError(f"schema registry {self._url} is unreachable: {exc}") from exc
        return RegisteredSchema(schema_id, schema.schema_type or "AVRO", schema.schema_str or "")
