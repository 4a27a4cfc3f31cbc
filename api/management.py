"""The management API under ``/api/v1`` and its one error shape.

Every failure of the management API (and of the app's own routes: health, metrics, unknown paths) answers

    {"error": {"code": "unknown_field", "message": "...", "field": "partiton_by"}}

``code`` is stable and machine-readable, ``message`` says what is wrong and how to fix it, ``field`` names the
request field at fault (``partition_by[0]``, ``topic``; null when no single field is). No HTML, no stack traces.
The mounted apps (``/iceberg``, ``/schema-registry``) keep the error shapes their clients expect.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import Authenticator, AuthError
from api.tables import PATCHABLE_FIELDS, CreateTable, tables_router
from tableflow.config import TableSettings
from tableflow.errors import BrokerError, CommitError, TableflowError
from tableflow.ingest.service import (
    FileOwnedError,
    Ingestor,
    TableNotFoundError,
    TopicCreationError,
    TopicError,
    TopicNotFoundError,
)
from tableflow.tables_store import TableExistsError

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

_DOMAIN_ERRORS: tuple[tuple[type[TableflowError], int, str, str | None], ...] = (
    (TableNotFoundError, 404, "not_found", None),
    (TableExistsError, 409, "already_exists", "table"),
    (FileOwnedError, 409, "file_owned", None),
    (TopicNotFoundError, 422, "topic_not_found", "topic"),
    (TopicCreationError, 422, "topic_not_created", "create_topic"),
    (TopicError, 422, "topic_refused", "topic"),
    (CommitError, 409, "conflict", None),
    (BrokerError, 503, "broker_unavailable", None),
)
"""Domain error -> HTTP status, code, and the request field it is about."""


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """The management API's error shape."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (401, "no or invalid credentials"),
        (403, "the client's role is too low"),
        (404, "no such table"),
        (409, "the table exists already, or the config file owns it"),
        (422, "a field is wrong; `error.field` names it"),
    )
}


def install_management(app: FastAPI, ingestor: Ingestor, auth: Authenticator) -> None:
    """Add the ``/api/v1`` routes (tables, OAuth2 token endpoint) and the error shape to ``app``."""
    app.include_router(tables_router(ingestor, auth), prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.add_api_route(
        f"{API_PREFIX}/oauth/tokens",
        auth.token_endpoint,
        methods=["POST"],
        tags=["auth"],
        summary="Trade client credentials for a bearer token (OAuth2 client_credentials, form-encoded)",
        response_class=Response,
    )
    app.add_exception_handler(AuthError, _on_auth_error)
    app.add_exception_handler(TableflowError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(ValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, field=field))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _on_auth_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    if exc.status_code == 401:
        return error_response(401, "not_authenticated", str(exc), headers={"WWW-Authenticate": "Bearer"})
    return error_response(exc.status_code, "forbidden", str(exc))


async def _on_domain_error(request: Request, exc: Exception) -> Response:
    for kind, status, code, field in _DOMAIN_ERRORS:
        if isinstance(exc, kind):
            return error_response(status, code, str(exc), field)
    return await _on_unexpected(request, exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError | ValidationError)
    problems = [_problem(item, request.method) for item in exc.errors()]
    status, code, field, _ = problems[0]
    message = "; ".join(text for *_, text in problems)
    return error_response(status, code, message, field)


def _problem(item: Mapping[str, Any], method: str) -> tuple[int, str, str | None, str]:
    """(status, code, field, message) for one pydantic error, in words that say how to fix it."""
    loc = [part for part in item.get("loc", ()) if part not in ("body", "query", "path")]
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".") or None
    kind = item.get("type", "")
    where = f"{field}: " if field else ""
    if kind == "json_invalid":
        return 400, "invalid_json", None, f"the body is not valid JSON ({item.get('ctx', {}).get('error')})"
    if kind == "extra_forbidden" and method == "PATCH" and field in TableSettings.model_fields:
        fix = f"PATCH changes {', '.join(PATCHABLE_FIELDS)}; to change {field}, DELETE the table and create it again"
        return 422, "immutable_field", field, f"{field} cannot be changed on an existing table. {fix}"
    if kind == "extra_forbidden":
        allowed = PATCHABLE_FIELDS if method == "PATCH" else tuple(CreateTable.model_fields)
        return 422, "unknown_field", field, f"unknown field {field!r}; the fields are {', '.join(allowed)} (see /docs)"
    if kind in ("model_attributes_type", "dict_type") and field is None:
        return 422, "invalid_body", None, "the body must be a JSON object (see /docs for its fields)"
    if kind == "missing" and field is None:
        return 422, "invalid_body", None, "the request needs a JSON body (see /docs)"
    message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
    return 422, "invalid_field", field, message if field and message.startswith(field) else f"{where}{message}"


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}; the API is under {API_PREFIX} (see /docs)"
        return error_response(404, "not_found", message, headers=headers)
    if exc.status_code == 405:
        message = f"{request.method} is not supported on {request.url.path} (see /docs)"
        return error_response(405, "method_not_allowed", message, headers=headers)
    return error_response(exc.status_code, "http_error", str(exc.detail), headers=headers)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    message = f"internal error ({type(exc).__name__}); the service log has the details"
    return error_response(500, "internal", message)
