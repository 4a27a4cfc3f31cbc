"""``tableflow tables ...`` against the running server: human output, ``--json``, and the server's errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tableflow.cli import main
from tests.api.support import TOKENS, Server, caught_up, create_topic, produce


def _run(capsys: pytest.CaptureFixture[str], server: Server, *args: str) -> tuple[int, str, str]:
    code = main(["tables", *args, "--server", server.url, "--token", TOKENS["admin"]])
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], server: Server, *args: str) -> Any:
    code, out, err = _run(capsys, server, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_cli_manages_a_table(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    topic = create_topic(server.bootstrap)
    identifier = f"kafka.{topic.replace('-', '_')}"
    created = _json(
        capsys, server, "create", topic, "--format", "raw", "--commit-interval-s", "0.3", "--property", "owner=cli"
    )
    assert created["identifier"] == identifier
    assert created["config"]["properties"] == {"owner": "cli"}
    produce(server.bootstrap, topic, [b"a", b"b", b"c"], partitions=1)
    with server.client() as api:
        caught_up(api, identifier, 3)

    code, out, _ = _run(capsys, server, "list")
    assert code == 0
    line = next(line for line in out.splitlines() if identifier in line)
    assert "raw" in line and "api" in line and "running" in line

    code, out, _ = _run(capsys, server, "show", identifier)
    assert code == 0 and "records_total" in out and "high watermark" in out

    assert _json(capsys, server, "pause", identifier)["status"]["state"] == "paused"
    assert _json(capsys, server, "resume", identifier)["status"]["state"] == "running"
    listed = _json(capsys, server, "list")
    assert identifier in [item["identifier"] for item in listed]

    code, out, _ = _run(capsys, server, "delete", identifier, "--purge")
    assert code == 0 and f"deleted {identifier}" in out


def test_cli_reports_the_servers_error(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, server, "show", "kafka.nope")
    assert code == 2
    assert "no table 'kafka.nope'" in err and "HTTP 404 not_found" in err
    code, _, err = _run(capsys, server, "create", "some-topic", "--partition-by", "nonsense(x)")
    assert code == 2 and "partition_by" in err
    assert main(["tables", "list", "--server", server.url]) == 2  # no token
    assert "authentication required" in capsys.readouterr().err
