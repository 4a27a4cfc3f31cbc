"""Settings validation: bad keys and values are rejected at start with the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tableflow.config import DEFAULT_TABLE_PROPERTIES, load_config
from tableflow.errors import ConfigError


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_config(None)
    assert settings.kafka.bootstrap_servers == "localhost:9092"
    assert settings.data_dir == Path("./tableflow-data")
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 8181)
    assert settings.schema_registry.url is None
    assert settings.catalog.properties == {}


def test_yaml_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tableflow.yaml"
    path.write_text(
        "kafka:\n  bootstrap_servers: broker:9092\n  properties:\n    security.protocol: SASL_SSL\n"
        "tables:\n  - topic: Orders.v1\n    partition_by: ['day(_kafka_timestamp)', 'bucket[16](id)']\n"
    )
    monkeypatch.setenv("TABLEFLOW_SERVER__PORT", "9000")
    settings = load_config(path)
    assert settings.server.port == 9000
    assert settings.kafka.client_config()["security.protocol"] == "SASL_SSL"
    table = settings.tables[0]
    assert table.identifier == "kafka.orders_v1"
    assert table.table_properties["write.parquet.compression-codec"] == "zstd"
    assert table.commit_interval_s == 10 and table.on_error == "dlq" and table.format == "avro"
    assert DEFAULT_TABLE_PROPERTIES["history.expire.min-snapshots-to-keep"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"kafka": {"bootstrap": "x"}}, "kafka.bootstrap: unknown key"),
        ({"tables": [{"topic": "t", "format": "xml"}]}, "tables.0.format"),
        ({"tables": [{"topic": "t", "partition_by": ["days(ts"]}]}, "is not an Iceberg transform"),
        ({"tables": [{"topic": "t", "table": "no_namespace"}]}, "must be a dotted identifier"),
        ({"tables": [{"topic": "t", "commit_interval_s": 0}]}, "tables.0.commit_interval_s"),
        ({"tables": [{"topic": "t"}, {"topic": "t"}]}, "configured twice"),
        ({"kafka": {"properties": {"group.id": "mine"}}}, "group.id is set by Tableflow itself"),
        ({"auth": {"enabled": True}}, "at least one entry in auth.clients"),
        ({"server": {"port": 70000}}, "server.port"),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace("[", r"\[")):
        load_config(None, **data)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tables: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(bad)


def test_secrets_are_masked_in_repr() -> None:
    settings = load_config(None, schema_registry={"url": "http://r", "basic_auth_user_info": "u:secret"})
    assert "secret" not in repr(settings)
    assert settings.schema_registry.client_config()["basic.auth.user.info"] == "u:secret"
