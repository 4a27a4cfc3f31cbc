"""The REST protocol itself, over raw HTTP: paths, prefixes, status codes and error bodies clients rely on."""

from __future__ import annotations

from typing import Any

import httpx
import pyarrow as pa
import pytest
from pyiceberg.catalog.rest import RestCatalog

from tests.catalog.conftest import CatalogServer
from tests.catalog.server import ingested_table

SCHEMA = {
    "type": "struct",
    "schema-id": 0,
    "fields": [{"id": 1, "name": "id", "type": "long", "required": False}],
}


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["type"] == error_type, body
    assert body["error"]["code"] == status
    assert body["error"]["message"]
    return body


def create_table(http: httpx.Client, namespace: str, name: str, **extra: Any) -> dict[str, Any]:
    response = http.post(f"/v1/namespaces/{namespace}/tables", json={"name": name, "schema": SCHEMA, **extra})
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def set_properties(uuid: str, **updates: str) -> dict[str, Any]:
    return {
        "requirements": [{"type": "assert-table-uuid", "uuid": uuid}],
        "updates": [{"action": "set-properties", "updates": updates}],
    }


def test_config_has_defaults_overrides_prefix_and_endpoints(http: httpx.Client) -> None:
    body = http.get("/v1/config").json()
    assert body["defaults"] == {}
    assert body["overrides"] == {"prefix": "tableflow"}
    assert "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}" in body["endpoints"]
    assert "POST /v1/{prefix}/transactions/commit" in body["endpoints"]
    assert http.get("/v1/config", params={"warehouse": "warehouse"}).status_code == 200
    assert http.get("/v1/config", params={"warehouse": "tableflow"}).status_code == 200
    assert_error(http.get("/v1/config", params={"warehouse": "other"}), 404, "NoSuchWarehouseException")


def test_routes_with_and_without_prefix(http: httpx.Client) -> None:
    assert http.post("/v1/tableflow/namespaces", json={"namespace": ["a"]}).status_code == 200
    assert http.get("/v1/namespaces").json()["namespaces"] == [["a"]]
    assert http.get("/v1/tableflow/namespaces").json()["namespaces"] == [["a"]]
    assert_error(http.get("/v1/other/namespaces"), 404, "NoSuchWarehouseException")
    assert_error(http.get("/v1/tableflow/nothing-here"), 404, "NotFoundException")


def test_nested_namespaces_use_unit_separator_and_paginate(http: httpx.Client) -> None:
    for child in ("c", "a", "b", "d", "e"):
        assert http.post("/v1/namespaces", json={"namespace": ["top", child]}).status_code == 200
    assert http.get("/v1/namespaces/top%1Fa").json() == {
        "namespace": ["top", "a"],
        "properties": {"location": http.get("/v1/namespaces/top%1Fa").json()["properties"]["location"]},
    }
    assert http.head("/v1/namespaces/top%1Fb").status_code == 204
    assert http.head("/v1/namespaces/top%1Fz").status_code == 404

    everything = http.get("/v1/namespaces", params={"parent": "top"}).json()
    assert everything == {"namespaces": [["top", c] for c in "abcde"], "next-page-token": None}

    seen: list[list[str]] = []
    token = ""
    for _ in range(10):
        page = http.get("/v1/namespaces", params={"parent": "top", "pageToken": token, "pageSize": 2}).json()
        assert len(page["namespaces"]) <= 2
        seen += page["namespaces"]
        token = page["next-page-token"]
        if token is None:
            break
    assert seen == everything["namespaces"]
    assert_error(http.get("/v1/namespaces", params={"parent": "top", "pageToken": "%%%"}), 400, "BadRequestException")
    assert_error(http.get("/v1/namespaces", params={"parent": "missing"}), 404, "NoSuchNamespaceException")


def test_namespace_errors(http: httpx.Client) -> None:
    assert http.post("/v1/namespaces", json={"namespace": ["ns"], "properties": {"a": "1"}}).status_code == 200
    assert_error(http.post("/v1/namespaces", json={"namespace": ["ns"]}), 409, "AlreadyExistsException")
    assert_error(http.get("/v1/namespaces/none"), 404, "NoSuchNamespaceException")
    assert_error(http.delete("/v1/namespaces/none"), 404, "NoSuchNamespaceException")
    assert_error(http.post("/v1/namespaces", json={"namespace": ["a.b"]}), 400, "BadRequestException")
    create_table(http, "ns", "t")
    assert_error(http.delete("/v1/namespaces/ns"), 409, "NamespaceNotEmptyException")

    updated = http.post("/v1/namespaces/ns/properties", json={"removals": ["a", "zz"], "updates": {"b": "2"}})
    assert updated.json() == {"updated": ["b"], "removed": ["a"], "missing": ["zz"]}
    assert_error(
        http.post("/v1/namespaces/ns/properties", json={"removals": ["b"], "updates": {"b": "3"}}),
        400,
        "BadRequestException",
    )


def test_validation_errors_are_400_in_iceberg_shape(http: httpx.Client) -> None:
    body = assert_error(http.post("/v1/namespaces", json={"namespace": "flat"}), 400, "BadRequestException")
    assert "namespace" in body["error"]["message"]
    assert_error(http.post("/v1/namespaces", content=b"{not json"), 400, "BadRequestException")
    http.post("/v1/namespaces", json={"namespace": ["ns"]})
    create_table(http, "ns", "t")
    bad_action = {"updates": [{"action": "make-it-fast"}]}
    assert_error(http.post("/v1/namespaces/ns/tables/t", json=bad_action), 400, "BadRequestException")
    assert_error(http.get("/v1/namespaces/ns/tables/t", params={"snapshots": "some"}), 400, "BadRequestException")
    assert_error(http.get("/v1/namespaces", params={"pageSize": 0}), 400, "BadRequestException")


def test_table_endpoints(http: httpx.Client, rest: RestCatalog) -> None:
    http.post("/v1/namespaces", json={"namespace": ["ns"]})
    created = create_table(http, "ns", "t", properties={"owner": "me"})
    assert created["metadata-location"].endswith(".metadata.json")
    assert created["config"] == {}
    assert_error(
        http.post("/v1/namespaces/ns/tables", json={"name": "t", "schema": SCHEMA}),
        409,
        "AlreadyExistsException",
    )
    assert_error(
        http.post("/v1/namespaces/no/tables", json={"name": "t", "schema": SCHEMA}),
        404,
        "NoSuchNamespaceException",
    )

    assert http.head("/v1/namespaces/ns/tables/t").status_code == 204
    assert http.head("/v1/namespaces/ns/tables/u").status_code == 404
    assert_error(http.get("/v1/namespaces/ns/tables/u"), 404, "NoSuchTableException")
    listed = http.get("/v1/namespaces/ns/tables").json()
    assert listed == {"identifiers": [{"namespace": ["ns"], "name": "t"}], "next-page-token": None}
    assert_error(http.get("/v1/namespaces/no/tables"), 404, "NoSuchNamespaceException")

    table = rest.load_table("ns.t")
    table.append(pa.table({"id": pa.array([1], pa.int64())}))
    table.append(pa.table({"id": pa.array([2], pa.int64())}))
    full = http.get("/v1/namespaces/ns/tables/t").json()["metadata"]
    refs = http.get("/v1/namespaces/ns/tables/t", params={"snapshots": "refs"}).json()["metadata"]
    assert len(full["snapshots"]) == 2
    assert [s["snapshot-id"] for s in refs["snapshots"]] == [full["current-snapshot-id"]]

    uuid = full["table-uuid"]
    committed = http.post("/v1/namespaces/ns/tables/t", json=set_properties(uuid, color="blue"))
    assert committed.status_code == 200
    assert committed.json()["metadata"]["properties"]["color"] == "blue"
    stale = {
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 1}],
        "updates": [{"action": "set-properties", "updates": {"x": "y"}}],
    }
    assert_error(http.post("/v1/namespaces/ns/tables/t", json=stale), 409, "CommitFailedException")
    assert_error(http.post("/v1/namespaces/ns/tables/u", json=set_properties(uuid)), 404, "NoSuchTableException")
    mismatched = {"identifier": {"namespace": ["ns"], "name": "other"}, "updates": []}
    assert_error(http.post("/v1/namespaces/ns/tables/t", json=mismatched), 400, "BadRequestException")

    report = {
        "report-type": "commit-report",
        "table-name": "ns.t",
        "snapshot-id": 1,
        "sequence-number": 1,
        "operation": "append",
        "metrics": {},
    }
    assert http.post("/v1/namespaces/ns/tables/t/metrics", json=report).status_code == 204
    assert http.get("/v1/namespaces/ns/tables/t/credentials").json() == {"storage-credentials": []}

    rename = {
        "source": {"namespace": ["ns"], "name": "t"},
        "destination": {"namespace": ["ns"], "name": "t2"},
    }
    assert http.post("/v1/tables/rename", json=rename).status_code == 204
    assert_error(http.post("/v1/tables/rename", json=rename), 404, "NoSuchTableException")
    create_table(http, "ns", "t")
    back = {"source": {"namespace": ["ns"], "name": "t2"}, "destination": {"namespace": ["ns"], "name": "t"}}
    assert_error(http.post("/v1/tables/rename", json=back), 409, "AlreadyExistsException")
    elsewhere = {
        "source": {"namespace": ["ns"], "name": "t2"},
        "destination": {"namespace": ["no"], "name": "t"},
    }
    assert_error(http.post("/v1/tables/rename", json=elsewhere), 404, "NoSuchNamespaceException")

    assert_error(
        http.post("/v1/namespaces/ns/register", json={"name": "r", "metadata-location": "file:///nowhere.json"}),
        400,
        "BadRequestException",
    )
    assert http.delete("/v1/namespaces/ns/tables/t2", params={"purgeRequested": "true"}).status_code == 204
    assert_error(http.delete("/v1/namespaces/ns/tables/t2"), 404, "NoSuchTableException")


def test_stage_create_then_commit(http: httpx.Client) -> None:
    http.post("/v1/namespaces", json={"namespace": ["ns"]})
    staged = create_table(http, "ns", "s", **{"stage-create": True})
    assert "metadata-location" not in staged
    assert http.head("/v1/namespaces/ns/tables/s").status_code == 404
    metadata = staged["metadata"]
    commit = {
        "requirements": [{"type": "assert-create"}],
        "updates": [
            {"action": "assign-uuid", "uuid": metadata["table-uuid"]},
            {"action": "upgrade-format-version", "format-version": metadata["format-version"]},
            {"action": "add-schema", "schema": metadata["schemas"][0]},
            {"action": "set-current-schema", "schema-id": -1},
            {"action": "add-spec", "spec": metadata["partition-specs"][0]},
            {"action": "set-default-spec", "spec-id": -1},
            {"action": "add-sort-order", "sort-order": metadata["sort-orders"][0]},
            {"action": "set-default-sort-order", "sort-order-id": -1},
            {"action": "set-location", "location": metadata["location"]},
            {"action": "set-properties", "updates": {"created": "staged"}},
        ],
    }
    response = http.post("/v1/namespaces/ns/tables/s", json=commit)
    assert response.status_code == 200, response.text
    assert http.get("/v1/namespaces/ns/tables/s").json()["metadata"]["properties"]["created"] == "staged"
    assert_error(http.post("/v1/namespaces/ns/tables/s", json=commit), 409, "CommitFailedException")


def test_multi_table_transaction_is_atomic(http: httpx.Client) -> None:
    http.post("/v1/namespaces", json={"namespace": ["ns"]})
    a = create_table(http, "ns", "a")["metadata"]["table-uuid"]
    b = create_table(http, "ns", "b")["metadata"]["table-uuid"]

    def change(name: str, uuid: str, **updates: str) -> dict[str, Any]:
        return {"identifier": {"namespace": ["ns"], "name": name}, **set_properties(uuid, **updates)}

    failing = {"table-changes": [change("a", a, v="1"), change("b", "00000000-0000-0000-0000-000000000000", v="1")]}
    assert_error(http.post("/v1/transactions/commit", json=failing), 409, "CommitFailedException")
    for name in ("a", "b"):
        assert "v" not in http.get(f"/v1/namespaces/ns/tables/{name}").json()["metadata"]["properties"]

    ok = {"table-changes": [change("a", a, v="2"), change("b", b, v="2")]}
    assert http.post("/v1/tableflow/transactions/commit", json=ok).status_code == 204
    for name in ("a", "b"):
        assert http.get(f"/v1/namespaces/ns/tables/{name}").json()["metadata"]["properties"]["v"] == "2"

    twice = {"table-changes": [change("a", a, v="3"), change("a", a, v="4")]}
    assert_error(http.post("/v1/transactions/commit", json=twice), 400, "BadRequestException")
    anonymous = {"table-changes": [set_properties(a, v="5")]}
    assert_error(http.post("/v1/transactions/commit", json=anonymous), 400, "BadRequestException")


def test_view_probes_answer_empty_and_404(http: httpx.Client) -> None:
    http.post("/v1/namespaces", json={"namespace": ["ns"]})
    assert http.get("/v1/namespaces/ns/views").json() == {"identifiers": [], "next-page-token": None}
    assert_error(http.get("/v1/namespaces/ns/views/v"), 404, "NoSuchViewException")
    assert http.head("/v1/namespaces/ns/views/v").status_code == 404
    assert_error(http.get("/v1/namespaces/none/views"), 404, "NoSuchNamespaceException")


def test_managed_table_commit_is_forbidden(server: CatalogServer, http: httpx.Client) -> None:
    ingested_table(server.backing, "kafka.clicks", "clicks")
    uuid = http.get("/v1/namespaces/kafka/tables/clicks").json()["metadata"]["table-uuid"]
    body = assert_error(
        http.post("/v1/namespaces/kafka/tables/clicks", json=set_properties(uuid, x="1")),
        403,
        "ForbiddenException",
    )
    assert "clicks" in body["error"]["message"]
    assert_error(http.delete("/v1/namespaces/kafka/tables/clicks"), 403, "ForbiddenException")


@pytest.mark.parametrize("path", ["/v1/namespaces/ns/tables/t", "/v1/config"])
def test_unsupported_method_is_405_in_iceberg_shape(http: httpx.Client, path: str) -> None:
    assert_error(http.put(path, json={}), 405, "MethodNotAllowedException")
