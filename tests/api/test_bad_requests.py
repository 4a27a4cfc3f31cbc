"""Every bad request answers 4xx in the one error shape, naming the field and the fix; never a stack trace."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.support import Server, create_topic

EXISTING = "{existing}"  # replaced by a topic that exists
TABLE = "/api/v1/tables"
# (method, path, body, status, code, field, words the message must contain)
CASES: list[tuple[str, str, Any, int, str, str | None, str]] = [
    ("POST", TABLE, {"topic": EXISTING, "partiton_by": []}, 422, "unknown_field", "partiton_by", "partition_by"),
    ("POST", TABLE, {"topic": EXISTING, "partition_by": ["foo(x)"]}, 422, "invalid_field", "partition_by", "day("),
    ("POST", TABLE, {"topic": EXISTING, "table": "orders"}, 422, "invalid_field", "table", "namespace.name"),
    ("POST", TABLE, {"topic": EXISTING, "format": "xml"}, 422, "invalid_field", "format", "raw"),
    ("POST", TABLE, {"topic": EXISTING, "commit_interval_s": 0}, 422, "invalid_field", "commit_interval_s", "0"),
    ("POST", TABLE, {"topic": EXISTING, "properties": {"a": 1}}, 422, "invalid_field", "properties.a", "string"),
    ("POST", TABLE, {"format": "raw"}, 422, "invalid_field", "topic", "required"),
    ("POST", TABLE, {"topic": "no-such-topic"}, 422, "topic_not_found", "topic", "create_topic"),
    ("POST", TABLE, {"topic": EXISTING, "partitions": 3}, 422, "invalid_field", None, "create_topic"),
    ("POST", TABLE, [], 422, "invalid_body", None, "JSON object"),
    ("POST", TABLE, b"{not json", 400, "invalid_json", None, "not valid JSON"),
    ("POST", TABLE, {"topic": EXISTING, "table": "kafka.file_owned"}, 409, "already_exists", "table", "choose"),
    ("PATCH", f"{TABLE}/kafka.file_owned", {"topic": "x"}, 422, "immutable_field", "topic", "DELETE"),
    ("PATCH", f"{TABLE}/kafka.file_owned", {"colour": "x"}, 422, "unknown_field", "colour", "commit_interval_s"),
    ("PATCH", f"{TABLE}/kafka.file_owned", {"on_error": "retry"}, 422, "invalid_field", "on_error", "dlq"),
    ("PATCH", f"{TABLE}/kafka.nope", {"on_error": "skip"}, 404, "not_found", None, "GET /api/v1/tables"),
    ("GET", f"{TABLE}/kafka.nope", None, 404, "not_found", None, "GET /api/v1/tables"),
    ("POST", f"{TABLE}/kafka.nope/pause", None, 404, "not_found", None, "kafka.nope"),
    ("GET", "/api/v1/nothing-here", None, 404, "not_found", None, "/docs"),
    ("PUT", TABLE, None, 405, "method_not_allowed", None, "PUT"),
]


@pytest.fixture(scope="module")
def existing_topic(server: Server) -> str:
    return create_topic(server.bootstrap)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "field", "hint"),
    CASES,
    ids=[f"{c[0]} {c[4]} {c[5]}" for c in CASES],
)
def test_bad_request(
    server: Server,
    existing_topic: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
    field: str | None,
    hint: str,
) -> None:
    if isinstance(body, dict):
        body = {key: existing_topic if value == EXISTING else value for key, value in body.items()}
    with server.client() as api:
        if isinstance(body, bytes):
            response = api.request(method, path, content=body, headers={"content-type": "application/json"})
        else:
            response = api.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field), error
    assert hint in error["message"], error["message"]
    assert "Traceback" not in response.text


def test_a_duplicate_api_table_is_refused(server: Server, existing_topic: str) -> None:
    with server.client() as api:
        body = {"topic": existing_topic, "format": "raw", "table": "kafka.twice"}
        assert api.post("/api/v1/tables", json=body).status_code == 201
        again = api.post("/api/v1/tables", json=body)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "already_exists"
        assert api.delete("/api/v1/tables/kafka.twice", params={"purge": "true"}).status_code == 204
