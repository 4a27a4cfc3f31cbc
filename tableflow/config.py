"""Settings: a YAML file plus ``TABLEFLOW_`` environment variables, validated in one place.

Environment variables override the file; nested keys use ``__`` (``TABLEFLOW_KAFKA__BOOTSTRAP_SERVERS``).
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tableflow.errors import ConfigError

DEFAULT_NAMESPACE = "kafka"
_TRANSFORM = re.compile(r"^(identity|year|month|day|hour|void)\((\w+)\)$|^(bucket|truncate)\[(\d+)\]\((\w+)\)$|^(\w+)$")

# Iceberg table properties every ingested table gets unless the table config overrides them.
DEFAULT_TABLE_PROPERTIES: dict[str, str] = {
    "write.parquet.compression-codec": "zstd",
    "commit.manifest.min-count-to-merge": "16",
    "commit.manifest-merge.enabled": "true",
    "history.expire.max-snapshot-age-ms": str(15 * 60 * 1000),
    "history.expire.min-snapshots-to-keep": "20",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Model):
    """Where the topics live; ``properties`` pass through to librdkafka (SASL, SSL, timeouts)."""

    bootstrap_servers: str = "localhost:9092"
    properties: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("properties")
    @classmethod
    def _no_managed_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        managed = {"group.id", "enable.auto.commit", "bootstrap.servers", "partition.assignment.strategy"}
        clash = sorted(managed & value.keys())
        if clash:
            raise ValueError(
                f"{', '.join(clash)} is set by Tableflow itself; remove it from kafka.properties "
                "(use kafka.bootstrap_servers for the brokers)"
            )
        return value

    def client_config(self) -> dict[str, str | int | float | bool]:
        return {"bootstrap.servers": self.bootstrap_servers, **self.properties}


class CatalogSettings(_Model):
    """Any pyiceberg catalog by its properties; empty means the embedded SQLite catalog under ``data_dir``."""

    name: str = "tableflow"
    properties: dict[str, str] = Field(default_factory=dict)


class SchemaRegistrySettings(_Model):
    """An external Confluent-compatible registry; no ``url`` means the embedded one."""

    url: str | None = None
    basic_auth_user_info: SecretStr | None = None
    bearer_token: SecretStr | None = None

    def client_config(self) -> dict[str, str]:
        assert self.url is not None
        conf = {"url": self.url}
        if self.basic_auth_user_info is not None:
            conf["basic.auth.credentials.source"] = "USER_INFO"
            conf["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        if self.bearer_token is not None:
            conf["bearer.auth.credential.source"] = "STATIC_TOKEN"
            conf["bearer.auth.token"] = self.bearer_token.get_secret_value()
            conf["bearer.auth.logical.cluster"] = "tableflow"
            conf["bearer.auth.identity.pool.id"] = "tableflow"
        return conf


class ServerSettings(_Model):
    host: str = "0.0.0.0"
    port: int = Field(default=8181, ge=0, le=65535)


class AuthClient(_Model):
    """A caller of the service: ``id``/``secret`` for OAuth2 client credentials; the secret is also an API key."""

    id: str = Field(min_length=1)
    secret: SecretStr
    role: Literal["admin", "writer", "reader"] = "reader"


class AuthSettings(_Model):
    """One mechanism for the management API, the REST catalog and the embedded registry; off by default."""

    enabled: bool = False
    clients: list[AuthClient] = Field(default_factory=list)
    token_ttl_s: int = Field(default=3600, gt=0)

    @model_validator(mode="after")
    def _has_clients(self) -> AuthSettings:
        if self.enabled and not self.clients:
            raise ValueError("auth.enabled needs at least one entry in auth.clients (id, secret, role)")
        return self


class RestCatalogSettings(_Model):
    """The Iceberg REST catalog served at ``/iceberg``."""

    # Tables Tableflow ingests answer 403 to outside commits unless this is true.
    ingested_tables_writable: bool = False


def sanitize_topic(topic: str) -> str:
    """Turn a topic name into an Iceberg table name: lowercase, ``[a-z0-9_]`` only."""
    return re.sub(r"[^a-z0-9_]", "_", topic.lower())


class TableSettings(_Model):
    """One topic materialized as one table."""

    topic: str = Field(min_length=1)
    table: str | None = None
    format: Literal["avro", "json", "raw"] = "avro"
    # binary: keys only as bytes in _kafka_key; the others also decode them into _kafka_key_decoded
    key_format: Literal["binary", "string", "avro", "json"] = "binary"
    partition_by: list[str] = Field(default_factory=list)
    commit_interval_s: float = Field(default=10.0, gt=0)
    max_buffer_bytes: int = Field(default=128 * 1024 * 1024, gt=0)
    max_buffer_records: int = Field(default=1_000_000, gt=0)
    start: Literal["earliest", "latest"] = "earliest"
    on_error: Literal["dlq", "skip", "suspend"] = "dlq"
    properties: dict[str, str] = Field(default_factory=dict)

    @field_validator("partition_by")
    @classmethod
    def _transforms(cls, value: list[str]) -> list[str]:
        for expr in value:
            if not _TRANSFORM.match(expr.replace(" ", "")):
                raise ValueError(
                    f"partition_by entry {expr!r} is not an Iceberg transform; use e.g. "
                    "'day(_kafka_timestamp)', 'bucket[16](id)', 'truncate[4](name)' or a column name"
                )
        return value

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)+", value):
            raise ValueError(f"table {value!r} must be a dotted identifier 'namespace.name' of letters, digits and '_'")
        return value

    @property
    def identifier(self) -> str:
        return self.table or f"{DEFAULT_NAMESPACE}.{sanitize_topic(self.topic)}"

    @property
    def table_properties(self) -> dict[str, str]:
        return {**DEFAULT_TABLE_PROPERTIES, **self.properties}


class Settings(BaseSettings):
    """Everything ``tableflow serve`` needs."""

    model_config = SettingsConfigDict(env_prefix="TABLEFLOW_", env_nested_delimiter="__", extra="forbid", frozen=True)

    data_dir: Path = Path("./tableflow-data")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rest_catalog: RestCatalogSettings = Field(default_factory=RestCatalogSettings)
    tables: list[TableSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_tables(self) -> Settings:
        seen: set[str] = set()
        for table in self.tables:
            if table.identifier in seen:
                raise ValueError(f"table {table.identifier!r} is configured twice; give each topic its own table")
            seen.add(table.identifier)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file: the file arrives through init_settings.
        return env_settings, init_settings


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against the README's configuration reference"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read settings from a YAML file (optional) and the environment; raise ConfigError naming each bad key."""
    data: dict[str, Any] = {}
    source = "environment"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist; pass an existing file to --config") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level, not {type(loaded).__name__}")
        data = loaded
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc
