"""Auth: tokens and API keys (api/auth.py), and the catalog enforcing roles over real HTTP."""

from __future__ import annotations

import base64

import pyarrow as pa
import pytest
from pydantic import SecretStr
from pyiceberg.exceptions import ForbiddenError, OAuthError, UnauthorizedError

from api.auth import Authenticator, NotAuthenticatedError
from tableflow.config import AuthClient, AuthSettings
from tests.catalog.conftest import StartServer

CLIENTS = [
    {"id": "admin", "secret": "admin-secret", "role": "admin"},
    {"id": "etl", "secret": "etl-secret", "role": "writer"},
    {"id": "bi", "secret": "bi-secret", "role": "reader"},
]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def authenticator(clock: Clock, secret: str = "etl-secret") -> Authenticator:
    settings = AuthSettings(
        enabled=True, token_ttl_s=60, clients=[AuthClient(id="etl", secret=SecretStr(secret), role="writer")]
    )
    return Authenticator(settings, clock=clock)


def test_tokens_carry_the_client_and_expire() -> None:
    clock = Clock()
    auth = authenticator(clock)
    token = auth.issue_token("etl", "etl-secret")
    assert token.expires_in == 60
    principal = auth.authenticate(f"Bearer {token.access_token}")
    assert (principal.client_id, principal.role) == ("etl", "writer")
    clock.now += 61
    with pytest.raises(NotAuthenticatedError, match="expired"):
        auth.authenticate(f"Bearer {token.access_token}")


def test_rotated_secret_revokes_tokens_and_tampering_is_caught() -> None:
    clock = Clock()
    token = authenticator(clock).issue_token("etl", "etl-secret").access_token
    with pytest.raises(NotAuthenticatedError, match="rotated"):
        authenticator(clock, secret="new-secret").authenticate(f"Bearer {token}")
    prefix, _payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"etl","exp":9999999999}').decode().rstrip("=")
    with pytest.raises(NotAuthenticatedError):
        authenticator(clock).authenticate(f"Bearer {prefix}.{forged}.{signature}")
    with pytest.raises(NotAuthenticatedError, match="malformed"):
        authenticator(clock).authenticate("Bearer tf1.garbage")


def test_secret_works_as_api_key_and_bad_credentials_do_not() -> None:
    auth = authenticator(Clock())
    assert auth.authenticate("Bearer etl-secret").client_id == "etl"
    for header in (None, "", "Bearer wrong", "Basic abc", "Bearer "):
        with pytest.raises(NotAuthenticatedError):
            auth.authenticate(header)


def test_disabled_auth_lets_everyone_in() -> None:
    auth = Authenticator(AuthSettings())
    assert auth.authenticate(None).role == "admin"
    assert auth.issue_token("anyone", "anything").access_token


def test_catalog_requires_credentials(start_server: StartServer) -> None:
    server = start_server(auth={"enabled": True, "clients": CLIENTS})
    with server.http() as http:
        response = http.get("/v1/config")
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "NotAuthorizedException"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert http.get("/v1/namespaces", headers={"Authorization": "Bearer nope"}).status_code == 401

        token = http.post(
            "/v1/oauth/tokens",
            data={"grant_type": "client_credentials", "client_id": "etl", "client_secret": "etl-secret"},
        ).json()
        assert token["token_type"] == "bearer"
        assert token["expires_in"] == 3600
        assert token["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        assert http.get("/v1/config", headers=bearer).status_code == 200

        exchanged = http.post(
            "/v1/oauth/tokens",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": token["access_token"],
                "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            },
        )
        assert exchanged.status_code == 200
        basic = http.post("/v1/oauth/tokens", data={"grant_type": "client_credentials"}, auth=("bi", "bi-secret"))
        assert basic.status_code == 200

        wrong = http.post(
            "/v1/oauth/tokens",
            data={"grant_type": "client_credentials", "client_id": "etl", "client_secret": "guess"},
        )
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_client"
        unsupported = http.post("/v1/oauth/tokens", data={"grant_type": "password"})
        assert (unsupported.status_code, unsupported.json()["error"]) == (400, "unsupported_grant_type")


def test_pyiceberg_roles(start_server: StartServer) -> None:
    server = start_server(auth={"enabled": True, "clients": CLIENTS})
    oauth = {"oauth2-server-uri": f"{server.uri}/v1/oauth/tokens"}
    writer = server.client(credential="etl:etl-secret", **oauth)
    writer.create_namespace("shared")
    writer.create_table("shared.t", schema=pa.schema([("id", pa.int64())]))

    reader = server.client(token="bi-secret")
    assert reader.list_tables("shared") == [("shared", "t")]
    assert reader.load_table("shared.t").scan().to_arrow().num_rows == 0
    with pytest.raises(ForbiddenError, match="needs 'writer'"):
        reader.create_namespace("mine")
    with pytest.raises(ForbiddenError):
        reader.drop_table("shared.t")

    with pytest.raises(OAuthError, match="invalid_client"):
        server.client(credential="etl:wrong", **oauth)
    with pytest.raises(UnauthorizedError):
        server.client()
    writer.close()
    reader.close()
