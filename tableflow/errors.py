"""One exception tree for everything Tableflow raises.

    TableflowError
    ├── ConfigError          bad settings: names the key and the fix
    ├── SchemaError          a schema that cannot be fetched, parsed or mapped
    │   ├── DecodeError      a record that does not decode with its writer schema
    │   └── IncompatibleSchemaError  a writer schema the table cannot evolve to hold (string→int, ...)
    ├── CommitError          an Iceberg commit that did not go through
    │   └── FencedError      another process owns a partition we tried to advance
    └── BrokerError          the Kafka client reported a fatal error

Third-party exceptions are translated where they enter (the catalog, the registry, librdkafka), so callers
catch these and nothing else.
"""

from __future__ import annotations


class TableflowError(Exception):
    """Root of every error Tableflow raises."""


class ConfigError(TableflowError):
    """Settings that cannot work; the message names the key and how to fix it."""


class SchemaError(TableflowError):
    """A schema that cannot be fetched, parsed or mapped to the table."""


class DecodeError(SchemaError):
    """A record that does not decode: wrong framing, unknown schema id, corrupt datum."""


class IncompatibleSchemaError(SchemaError):
    """A writer's field the table's column cannot hold: Iceberg allows no such type change (docs/schema-evolution.md).

    Records of that writer follow the table's error policy; the table is never changed for them.
    """

    def __init__(self, path: str, table_type: str, writer_type: str, reason: str) -> None:
        super().__init__(
            f"field {path}: the table's column is {table_type}, this writer's field is {writer_type}; {reason}"
        )
        self.path = path
        self.table_type = table_type
        self.writer_type = writer_type


class CommitError(TableflowError):
    """An Iceberg commit that did not go through after its retries."""


class FencedError(CommitError):
    """The table's position for a partition moved under us: another process owns it now."""

    def __init__(self, topic: str, partition: int, expected: int | None, found: int | None) -> None:
        super().__init__(
            f"{topic}[{partition}]: table position is {found}, this process expected {expected}; "
            "another process took the partition over, so this batch is dropped and re-read"
        )
        self.topic = topic
        self.partition = partition
        self.expected = expected
        self.found = found


class BrokerError(TableflowError):
    """A fatal error from the Kafka client."""
