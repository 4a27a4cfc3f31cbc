"""Tableflow: Kafka topics as Apache Iceberg tables, exactly once."""

from tableflow.config import Settings, TableSettings, load_config
from tableflow.errors import (
    BrokerError,
    CommitError,
    ConfigError,
    DecodeError,
    FencedError,
    SchemaError,
    TableflowError,
)

__all__ = [
    "BrokerError",
    "CommitError",
    "ConfigError",
    "DecodeError",
    "FencedError",
    "SchemaError",
    "Settings",
    "TableSettings",
    "TableflowError",
    "load_config",
]
