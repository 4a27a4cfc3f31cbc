"""The management API and /metrics behind the shared authenticator: 401 without credentials, 403 for a low role."""

from __future__ import annotations

import httpx
import pytest

from tests.api.support import Server

MISSING = "/api/v1/tables/kafka.missing"  # an admin gets past auth to a 404, so the matrix changes nothing
OPERATIONS: list[tuple[str, str, object]] = [
    ("GET", "/api/v1/tables", None),
    ("GET", "/api/v1/tables/kafka.file_owned", None),
    ("GET", "/metrics", None),
    ("POST", "/api/v1/tables", {"topic": "x", "format": "bogus"}),
    ("PATCH", MISSING, {"commit_interval_s": 1}),
    ("POST", f"{MISSING}/pause", None),
    ("POST", f"{MISSING}/resume", None),
    ("DELETE", MISSING, None),
]
# What each caller gets: reads need reader, changes need admin (an admin's change hits 404/422 here).
EXPECTED: dict[str | None, list[int]] = {
    None: [401] * 8,
    "bogus": [401] * 8,
    "reader": [200, 200, 200, 403, 403, 403, 403, 403],
    "writer": [200, 200, 200, 403, 403, 403, 403, 403],
    "admin": [200, 200, 200, 422, 404, 404, 404, 404],
}


@pytest.mark.parametrize("caller", list(EXPECTED), ids=[str(c) for c in EXPECTED])
def test_auth_matrix(server: Server, caller: str | None) -> None:
    headers = {"Authorization": f"Bearer {caller}-secret"} if caller else {}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        got = [http.request(method, path, json=body).status_code for method, path, body in OPERATIONS]
        assert got == EXPECTED[caller]
        denied = http.post("/api/v1/tables/kafka.file_owned/pause")
    if caller in (None, "bogus"):
        assert denied.headers["www-authenticate"].startswith("Bearer")
        assert denied.json()["error"]["code"] == "not_authenticated"
    elif caller != "admin":
        error = denied.json()["error"]
        assert error["code"] == "forbidden" and "'admin'" in error["message"]
    assert "Traceback" not in denied.text


def test_a_token_from_the_token_endpoint_works(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        issued = http.post(
            "/api/v1/oauth/tokens",
            data={"grant_type": "client_credentials", "client_id": "reader", "client_secret": "reader-secret"},
        )
        assert issued.status_code == 200, issued.text
        token = issued.json()["access_token"]
        assert http.get("/api/v1/tables", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        refused = http.post(
            "/api/v1/oauth/tokens",
            data={"grant_type": "client_credentials", "client_id": "reader", "client_secret": "wrong"},
        )
        assert refused.status_code == 401
