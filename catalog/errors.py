"""Catalog errors and their wire form, the spec's ``IcebergErrorResponse``.

    CatalogError (TableflowError)       500 ServiceFailureException
    ├── BadRequestError                 400 BadRequestException
    ├── ForbiddenError                  403 ForbiddenException
    ├── NotFoundError                   404 NotFoundException
    │   ├── NoSuchNamespaceError        404 NoSuchNamespaceException
    │   ├── NoSuchTableError            404 NoSuchTableException
    │   ├── NoSuchViewError             404 NoSuchViewException
    │   └── NoSuchWarehouseError        404 NoSuchWarehouseException
    ├── ConflictError                   409
    │   ├── AlreadyExistsError          409 AlreadyExistsException
    │   ├── NamespaceNotEmptyError      409 NamespaceNotEmptyException
    │   └── CommitFailedError           409 CommitFailedException
    ├── NotSupportedError               501 UnsupportedOperationException
    ├── ServiceUnavailableError         503 ServiceUnavailableException
    └── CommitStateUnknownError         500 CommitStateUnknownException

The ``type`` strings are the Java exception names engines map back to their own exceptions, so they are
part of the contract. pyiceberg's exceptions are translated here (``translate``), once, at the edge.
"""

from __future__ import annotations

import logging
from typing import Any

import pyiceberg.exceptions as ice
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import AuthError, OAuthError
from tableflow.errors import TableflowError

logger = logging.getLogger(__name__)


class CatalogError(TableflowError):
    """An error the REST catalog answers with; the message tells the client what to change."""

    status_code = 500
    error_type = "ServiceFailureException"


class BadRequestError(CatalogError):
    status_code = 400
    error_type = "BadRequestException"


class ForbiddenError(CatalogError):
    status_code = 403
    error_type = "ForbiddenException"


class NotFoundError(CatalogError):
    status_code = 404
    error_type = "NotFoundException"


class NoSuchNamespaceError(NotFoundError):
    error_type = "NoSuchNamespaceException"


class NoSuchTableError(NotFoundError):
    error_type = "NoSuchTableException"


class NoSuchViewError(NotFoundError):
    error_type = "NoSuchViewException"


class NoSuchWarehouseError(NotFoundError):
    error_type = "NoSuchWarehouseException"


class ConflictError(CatalogError):
    status_code = 409
    error_type = "AlreadyExistsException"


class AlreadyExistsError(ConflictError):
    error_type = "AlreadyExistsException"


class NamespaceNotEmptyError(ConflictError):
    error_type = "NamespaceNotEmptyException"


class CommitFailedError(ConflictError):
    error_type = "CommitFailedException"


class NotSupportedError(CatalogError):
    status_code = 501
    error_type = "UnsupportedOperationException"


class ServiceUnavailableError(CatalogError):
    status_code = 503
    error_type = "ServiceUnavailableException"


class CommitStateUnknownError(CatalogError):
    status_code = 500
    error_type = "CommitStateUnknownException"


_TRANSLATIONS: tuple[tuple[type[Exception], type[CatalogError]], ...] = (
    (ice.NoSuchNamespaceError, NoSuchNamespaceError),
    (ice.NoSuchTableError, NoSuchTableError),
    (ice.NoSuchViewError, NoSuchViewError),
    (ice.NamespaceAlreadyExistsError, AlreadyExistsError),
    (ice.TableAlreadyExistsError, AlreadyExistsError),
    (ice.NamespaceNotEmptyError, NamespaceNotEmptyError),
    (ice.CommitFailedException, CommitFailedError),
    (ice.ValidationError, BadRequestError),
    (NotImplementedError, NotSupportedError),
    (ValueError, BadRequestError),
)


def translate(exc: Exception) -> CatalogError:
    """The catalog error for a pyiceberg (or validation) exception; unknown ones become a 500."""
    if isinstance(exc, CatalogError):
        return exc
    for source, target in _TRANSLATIONS:
        if isinstance(exc, source):
            return target(str(exc) or type(exc).__name__)
    return CatalogError(f"internal error ({type(exc).__name__}); the server log has the details")


def error_body(message: str, error_type: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "code": code}}


def error_response(message: str, error_type: str, code: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error_body(message, error_type, code), status_code=code, headers=headers)


def describe_validation(errors: list[Any]) -> str:
    """One line per problem: where in the request and what is wrong with it."""
    parts = []
    for item in errors[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "request"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    """Every failure leaves the catalog as an ``IcebergErrorResponse``: no 422s, no HTML, no stack traces."""

    async def on_catalog_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CatalogError)
        return error_response(str(exc), exc.error_type, exc.status_code)

    async def on_auth_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)
        if isinstance(exc, OAuthError):
            return JSONResponse({"error": exc.error, "error_description": exc.description}, exc.status_code)
        headers = {"WWW-Authenticate": 'Bearer realm="tableflow"'} if exc.status_code == 401 else None
        return error_response(str(exc), exc.error_type, exc.status_code, headers)

    async def on_validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError | ValidationError)
        return error_response(describe_validation(list(exc.errors())), BadRequestError.error_type, 400)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            message = (
                f"no such endpoint: {request.method} {request.url.path}; GET /v1/config lists the endpoints "
                "and the prefix this catalog serves"
            )
            return error_response(message, NotFoundError.error_type, 404)
        if exc.status_code == 405:
            message = f"{request.method} is not supported on {request.url.path}"
            return error_response(message, "MethodNotAllowedException", 405, dict(exc.headers or {}))
        return error_response(str(exc.detail), "RESTException", exc.status_code, dict(exc.headers or {}))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("catalog request %s %s failed", request.method, request.url.path, exc_info=exc)
        error = translate(exc)
        return error_response(str(error), error.error_type, error.status_code)

    app.add_exception_handler(CatalogError, on_catalog_error)
    app.add_exception_handler(AuthError, on_auth_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
