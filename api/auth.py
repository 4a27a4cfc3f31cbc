"""The one way callers prove who they are: OAuth2 client credentials, bearer tokens and API keys.

Every HTTP surface of the service (REST catalog, management API, embedded Schema Registry) shares this module:

* ``POST .../oauth/tokens`` trades ``client_id``/``client_secret`` (form fields or HTTP Basic) for a
  bearer token with a TTL (``grant_type=client_credentials``), or a still-valid token for a fresh one
  (token exchange, which Java clients use to refresh).
* ``Authorization: Bearer <token>`` authenticates a request; a client's secret is accepted there too, as an
  API key.
* ``Authenticator.require(role)`` is a FastAPI dependency: ``reader`` < ``writer`` < ``admin``.

Tokens are ``tf1.<payload>.<signature>``: the payload names the client and the expiry, the signature is an
HMAC keyed by that client's secret. Nothing is stored, every instance with the same configuration accepts the
same tokens, and rotating a client's secret revokes its tokens. With ``auth.enabled: false`` everything is
allowed.

Errors (``AuthError`` and its subclasses) carry an HTTP status and the Iceberg exception name; each app
renders them in its own error shape.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import JSONResponse

from tableflow.config import AuthClient, AuthSettings
from tableflow.errors import TableflowError

logger = logging.getLogger(__name__)

Role = Literal["reader", "writer", "admin"]
_RANK: dict[str, int] = {"reader": 0, "writer": 1, "admin": 2}
_TOKEN_PREFIX = "tf1"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


@dataclass(frozen=True)
class Principal:
    """Who made a request and what they may do."""

    client_id: str
    role: Role


ANONYMOUS = Principal(client_id="anonymous", role="admin")
"""The caller when auth is disabled: the embedded setup trusts everyone who can reach it."""


class AuthError(TableflowError):
    """A request that is not authenticated or not allowed; ``status_code`` and ``error_type`` say which."""

    status_code = 401
    error_type = "NotAuthorizedException"


class NotAuthenticatedError(AuthError):
    """No credentials, or credentials that are wrong or expired (401)."""


class PermissionDeniedError(AuthError):
    """Valid credentials whose role is too low for the operation (403)."""

    status_code = 403
    error_type = "ForbiddenException"


class OAuthError(AuthError):
    """A token request the OAuth2 endpoint refuses; rendered as RFC 6749 ``{"error": ...}``."""

    def __init__(self, error: str, description: str, status_code: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status_code = status_code


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    """Issues and checks credentials for the clients in ``auth.clients``."""

    def __init__(self, settings: AuthSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._clients: dict[str, AuthClient] = {client.id: client for client in settings.clients}
        # Per-client signing keys derived from the secrets: the secret itself never signs anything.
        self._keys: dict[str, bytes] = {
            client.id: hashlib.sha256(b"tableflow-token:" + client.secret.get_secret_value().encode()).digest()
            for client in settings.clients
        }

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    def issue_token(self, client_id: str, client_secret: str) -> IssuedToken:
        """Client credentials grant: a signed token for a known client with the right secret."""
        if not self.enabled:
            return IssuedToken(secrets.token_urlsafe(24), self._settings.token_ttl_s)
        client = self._clients.get(client_id)
        if client is None or not hmac.compare_digest(client.secret.get_secret_value().encode(), client_secret.encode()):
            raise OAuthError(
                "invalid_client",
                "unknown client_id or wrong client_secret; check the credential against auth.clients",
                status_code=401,
            )
        return self._sign(client.id)

    def exchange_token(self, subject_token: str) -> IssuedToken:
        """Token exchange grant: a fresh token for the holder of a valid one (how Java clients refresh)."""
        if not self.enabled:
            return IssuedToken(secrets.token_urlsafe(24), self._settings.token_ttl_s)
        try:
            principal = self.authenticate(f"Bearer {subject_token}")
        except AuthError as exc:
            raise OAuthError("invalid_grant", f"subject_token is not usable: {exc}", status_code=400) from exc
        return self._sign(principal.client_id)

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization`` header; raises NotAuthenticatedError if there is none."""
        if not self.enabled:
            return ANONYMOUS
        if not authorization:
            raise NotAuthenticatedError(
                "authentication required: send 'Authorization: Bearer <token>' (get a token from "
                "POST /v1/oauth/tokens with client_credentials) or a client secret as the bearer value"
            )
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise NotAuthenticatedError("unsupported Authorization header; use 'Authorization: Bearer <token>'")
        credential = credential.strip()
        if credential.startswith(_TOKEN_PREFIX + "."):
            return self._verify(credential)
        for client in self._clients.values():
            if hmac.compare_digest(client.secret.get_secret_value().encode(), credential.encode()):
                return Principal(client.id, client.role)
        raise NotAuthenticatedError("the bearer credential is neither a valid token nor a client secret")

    def require(self, role: Role) -> Callable[[Request], Awaitable[Principal]]:
        """A FastAPI dependency that lets a request through only for ``role`` or higher."""
        needed = _RANK[role]

        async def dependency(request: Request) -> Principal:
            principal = self.authenticate(request.headers.get("authorization"))
            if _RANK[principal.role] < needed:
                raise PermissionDeniedError(
                    f"client {principal.client_id!r} has role {principal.role!r}; this operation needs "
                    f"{role!r} or higher (change the client's role in auth.clients)"
                )
            request.state.principal = principal
            return principal

        return dependency

    async def token_endpoint(self, request: Request) -> JSONResponse:
        """``POST /v1/oauth/tokens``: the OAuth2 token endpoint (form-encoded, RFC 6749 and RFC 8693)."""
        try:
            form = self._read_form(await request.body())
            grant_type = form.get("grant_type")
            if grant_type == "client_credentials":
                client_id, client_secret = self._client_credentials(form, request.headers.get("authorization"))
                issued = self.issue_token(client_id, client_secret)
            elif grant_type == _TOKEN_EXCHANGE:
                subject = form.get("subject_token")
                if not subject:
                    raise OAuthError("invalid_request", "token exchange needs a subject_token")
                issued = self.exchange_token(subject)
            else:
                raise OAuthError(
                    "unsupported_grant_type",
                    f"grant_type {grant_type!r} is not supported; use client_credentials or token exchange",
                )
        except OAuthError as exc:
            return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=exc.status_code)
        body: dict[str, str | int] = {
            "access_token": issued.access_token,
            "token_type": "bearer",
            "expires_in": issued.expires_in,
            "issued_token_type": ACCESS_TOKEN_TYPE,
        }
        if scope := form.get("scope"):
            body["scope"] = scope
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def _sign(self, client_id: str) -> IssuedToken:
        ttl = self._settings.token_ttl_s
        payload = json.dumps({"sub": client_id, "exp": int(self._clock()) + ttl}, separators=(",", ":")).encode()
        body = f"{_TOKEN_PREFIX}.{_b64encode(payload)}"
        signature = hmac.new(self._keys[client_id], body.encode(), hashlib.sha256).digest()
        return IssuedToken(f"{body}.{_b64encode(signature)}", ttl)

    def _verify(self, token: str) -> Principal:
        try:
            _, payload_text, signature_text = token.split(".")
            payload = json.loads(_b64decode(payload_text))
            client_id = str(payload["sub"])
            expires = int(payload["exp"])
            signature = _b64decode(signature_text)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise NotAuthenticatedError("malformed bearer token; request a new one from /v1/oauth/tokens") from exc
        key = self._keys.get(client_id)
        body = token.rsplit(".", 1)[0].encode()
        if key is None or not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), signature):
            raise NotAuthenticatedError("invalid bearer token (unknown client or rotated secret); request a new one")
        if expires <= self._clock():
            raise NotAuthenticatedError("bearer token expired; request a new one from /v1/oauth/tokens")
        client = self._clients[client_id]
        return Principal(client.id, client.role)

    @staticmethod
    def _read_form(body: bytes) -> dict[str, str]:
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise OAuthError("invalid_request", "the token request body is not UTF-8 form data") from exc
        return {key: values[0] for key, values in parsed.items() if values}

    @staticmethod
    def _client_credentials(form: dict[str, str], authorization: str | None) -> tuple[str, str]:
        """Credentials from the form, or from HTTP Basic as RFC 6749 section 2.3.1 allows."""
        if "client_id" in form and "client_secret" in form:
            return form["client_id"], form["client_secret"]
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise OAuthError("invalid_request", "malformed HTTP Basic credentials") from exc
            client_id, sep, client_secret = decoded.partition(":")
            if sep:
                return client_id, client_secret
        raise OAuthError(
            "invalid_request",
            "client_credentials needs client_id and client_secret (form fields or HTTP Basic)",
        )


__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ANONYMOUS",
    "AuthError",
    "Authenticator",
    "IssuedToken",
    "NotAuthenticatedError",
    "OAuthError",
    "PermissionDeniedError",
    "Principal",
    "Role",
]
