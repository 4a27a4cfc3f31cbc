"""The embedded Schema Registry's HTTP API: Confluent's REST shapes and error codes over a ``SchemaStore``.

The service mounts it at ``/schema-registry`` when no external registry is configured, so confluent-kafka's
``SchemaRegistryClient`` and serializers (and other Confluent-compatible clients) work against it unchanged.
Every error, a malformed request or an unknown path included, answers ``{"error_code": ..., "message": ...}``,
which is what those clients parse.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TypeVar

from fastapi import FastAPI, Query, Request, Response, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from api.auth import AuthError
from tableflow.schema.store import (
    SCHEMA_TYPES,
    Compatibility,
    InvalidCompatibilityLevel,
    InvalidSchema,
    RegistryError,
    Schema,
    SchemaReference,
    SchemaStore,
    SubjectVersion,
    parse_version,
)

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPTED_MEDIA_TYPES = frozenset({MEDIA_TYPE, "application/vnd.schemaregistry+json", "application/json"})
_T = TypeVar("_T")


class RegistryJSONResponse(JSONResponse):
    """JSON labelled as Confluent's media type, which registry clients ask for first."""

    media_type = MEDIA_TYPE


class _Reference(BaseModel):
    name: str
    subject: str
    version: int = Field(ge=1)


class _SchemaRequest(BaseModel):
    """A schema as clients send it to register, look up or test; unknown properties are ignored, as clients
    announce with ``Confluent-Accept-Unknown-Properties``."""

    model_config = ConfigDict(extra="ignore")

    schema_str: str = Field(alias="schema")
    schema_type: str | None = Field(default=None, alias="schemaType")
    references: list[_Reference] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    rule_set: dict[str, Any] | None = Field(default=None, alias="ruleSet")

    def to_schema(self) -> Schema:
        if self.metadata is not None or self.rule_set is not None:
            raise InvalidSchema(
                "metadata and ruleSet (data contracts) are not supported by the embedded registry; "
                "send the schema without them, or configure an external schema registry"
            )
        references = tuple(SchemaReference(ref.name, ref.subject, ref.version) for ref in self.references)
        return Schema(self.schema_str, (self.schema_type or "AVRO").upper(), references)


class _ConfigRequest(BaseModel):
    """A compatibility level; clients send it as ``compatibility`` (older ones as ``compatibilityLevel``)."""

    model_config = ConfigDict(extra="ignore")

    compatibility: str | None = None
    compatibility_level: str | None = Field(default=None, alias="compatibilityLevel")

    def level(self) -> Compatibility:
        given = self.compatibility or self.compatibility_level
        if given is None:
            raise InvalidCompatibilityLevel(
                'No compatibility level given; send {"compatibility": "BACKWARD"} or another level'
            )
        return Compatibility.parse(given)


def _schema_body(schema: Schema) -> dict[str, Any]:
    """Confluent leaves out ``schemaType`` for AVRO (the default) and ``references`` when there are none."""
    body: dict[str, Any] = {"schema": schema.schema_str}
    if schema.schema_type != "AVRO":
        body["schemaType"] = schema.schema_type
    if schema.references:
        body["references"] = [asdict(ref) for ref in schema.references]
    return body


def _version_body(row: SubjectVersion) -> dict[str, Any]:
    return {"subject": row.subject, "version": row.version, "id": row.schema_id, **_schema_body(row.schema)}


def _raw_schema(schema: Schema) -> Response:
    """The ``/schema`` endpoints answer the schema itself, unescaped, not wrapped in an object."""
    return Response(content=schema.schema_str, media_type=MEDIA_TYPE)


def _page(items: list[_T], offset: int, limit: int) -> list[_T]:
    """Confluent's paging: skip ``offset`` items, then at most ``limit`` (negative: all the rest)."""
    rest = items[offset:]
    return rest if limit < 0 else rest[:limit]


def _error(status: int, error_code: int, message: str) -> RegistryJSONResponse:
    return RegistryJSONResponse({"error_code": error_code, "message": message}, status_code=status)


async def _registry_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    # Confluent's codes are the HTTP status followed by two digits (40401 -> 404); 409 is its own status.
    status = exc.error_code if exc.error_code < 1000 else exc.error_code // 100
    return _error(status, exc.error_code, str(exc))


async def _invalid_request(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors())
    return _error(422, 422, f"Invalid request ({problems}); see the Confluent Schema Registry API for its shape")


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.status_code, f"HTTP {exc.status_code} {exc.detail}")


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("schema registry failed on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, 500, f"Internal schema registry error ({type(exc).__name__}); see the service log")


async def _check_content_type(request: Request) -> None:
    """Bodies must be JSON in one of the registry's media types; anything else is 415, like Confluent."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    if content_type.split(";")[0].strip().lower() not in ACCEPTED_MEDIA_TYPES:
        raise HTTPException(
            415,
            f"Unsupported Media Type: {content_type}; send {', '.join(sorted(ACCEPTED_MEDIA_TYPES))}",
        )


async def _auth_error(_: Request, exc: Exception) -> Response:
    """401/403 from the shared authenticator, in the registry's error shape."""
    assert isinstance(exc, AuthError)
    return RegistryJSONResponse({"error_code": exc.status_code, "message": str(exc)}, status_code=exc.status_code)


def create_registry_app(
    store: SchemaStore,
    *,
    dependencies: Sequence[params.Depends] = (),
    write_dependencies: Sequence[params.Depends] = (),
) -> FastAPI:
    """The registry as an app to mount at ``/schema-registry``.

    Authentication plugs in here: ``dependencies`` guard every route, ``write_dependencies`` also guard the
    ones that change state (register, delete, set or delete a config), e.g. reader and writer roles.
    """
    app = FastAPI(
        title="Tableflow Schema Registry",
        default_response_class=RegistryJSONResponse,
        dependencies=[*dependencies, params.Depends(_check_content_type)],
    )
    app.add_exception_handler(RegistryError, _registry_error)
    app.add_exception_handler(AuthError, _auth_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    writes = list(write_dependencies)

    # --- schemas by id ---

    @app.get("/schemas/types")
    def schema_types() -> list[str]:
        return list(SCHEMA_TYPES)

    @app.get("/schemas/ids/{schema_id}")
    def schema_by_id(schema_id: int) -> dict[str, Any]:
        return _schema_body(store.schema_by_id(schema_id))

    @app.get("/schemas/ids/{schema_id}/schema")
    def raw_schema_by_id(schema_id: int) -> Response:
        return _raw_schema(store.schema_by_id(schema_id))

    @app.get("/schemas/ids/{schema_id}/subjects")
    def subjects_of_schema(
        schema_id: int, deleted: bool = False, offset: int = Query(0, ge=0), limit: int = -1
    ) -> list[str]:
        rows = store.versions_of_schema(schema_id, deleted=deleted)
        return _page(sorted({row.subject for row in rows}), offset, limit)

    @app.get("/schemas/ids/{schema_id}/versions")
    def versions_of_schema(
        schema_id: int, deleted: bool = False, offset: int = Query(0, ge=0), limit: int = -1
    ) -> list[dict[str, Any]]:
        rows = store.versions_of_schema(schema_id, deleted=deleted)
        return _page([{"subject": row.subject, "version": row.version} for row in rows], offset, limit)

    # --- subjects ---

    @app.get("/subjects")
    def subjects(
        deleted: bool = False,
        subject_prefix: str = Query("", alias="subjectPrefix"),
        offset: int = Query(0, ge=0),
        limit: int = -1,
    ) -> list[str]:
        return _page(store.subjects(deleted=deleted, prefix=subject_prefix), offset, limit)

    @app.post("/subjects/{subject}/versions", dependencies=writes)
    def register(subject: str, body: _SchemaRequest) -> dict[str, Any]:
        # ``normalize`` is accepted and needs nothing: schemas are always compared by canonical form
        return {"id": store.register(subject, body.to_schema()).schema_id}

    @app.post("/subjects/{subject}")
    def lookup(subject: str, body: _SchemaRequest, deleted: bool = False) -> dict[str, Any]:
        return _version_body(store.lookup(subject, body.to_schema(), deleted=deleted))

    @app.get("/subjects/{subject}/versions")
    def versions(subject: str, deleted: bool = False, offset: int = Query(0, ge=0), limit: int = -1) -> list[int]:
        return _page(store.versions(subject, deleted=deleted), offset, limit)

    @app.get("/subjects/{subject}/versions/{version}")
    def version(subject: str, version: str, deleted: bool = False) -> dict[str, Any]:
        return _version_body(store.version(subject, parse_version(version), deleted=deleted))

    @app.get("/subjects/{subject}/versions/{version}/schema")
    def raw_schema_by_version(subject: str, version: str, deleted: bool = False) -> Response:
        return _raw_schema(store.version(subject, parse_version(version), deleted=deleted).schema)

    @app.delete("/subjects/{subject}", dependencies=writes)
    def delete_subject(subject: str, permanent: bool = False) -> list[int]:
        return store.delete_subject(subject, permanent=permanent)

    @app.delete("/subjects/{subject}/versions/{version}", dependencies=writes)
    def delete_version(subject: str, version: str, permanent: bool = False) -> int:
        return store.delete_version(subject, parse_version(version), permanent=permanent)

    # --- compatibility ---

    @app.get("/config")
    def global_config() -> dict[str, str]:
        return {"compatibilityLevel": store.get_compatibility()}

    @app.put("/config", dependencies=writes)
    def set_global_config(body: _ConfigRequest) -> dict[str, str]:
        level = body.level()
        store.set_compatibility(None, level)
        return {"compatibility": level}

    @app.delete("/config", dependencies=writes)
    def delete_global_config() -> dict[str, str]:
        return {"compatibilityLevel": store.delete_compatibility(None)}

    @app.get("/config/{subject}")
    def subject_config(subject: str, default_to_global: bool = Query(False, alias="defaultToGlobal")) -> dict[str, str]:
        return {"compatibilityLevel": store.get_compatibility(subject, default_to_global=default_to_global)}

    @app.put("/config/{subject}", dependencies=writes)
    def set_subject_config(subject: str, body: _ConfigRequest) -> dict[str, str]:
        level = body.level()
        store.set_compatibility(subject, level)
        return {"compatibility": level}

    @app.delete("/config/{subject}", dependencies=writes)
    def delete_subject_config(subject: str) -> dict[str, str]:
        return {"compatibilityLevel": store.delete_compatibility(subject)}

    def _compatibility_answer(problems: list[str], verbose: bool) -> dict[str, Any]:
        answer: dict[str, Any] = {"is_compatible": not problems}
        if verbose:
            answer["messages"] = problems
        return answer

    @app.post("/compatibility/subjects/{subject}/versions/{version}")
    def test_against_version(subject: str, version: str, body: _SchemaRequest, verbose: bool = False) -> dict[str, Any]:
        problems = store.check_compatibility(subject, body.to_schema(), parse_version(version))
        return _compatibility_answer(problems, verbose)

    @app.post("/compatibility/subjects/{subject}/versions")
    def test_against_subject(subject: str, body: _SchemaRequest, verbose: bool = False) -> dict[str, Any]:
        return _compatibility_answer(store.check_compatibility(subject, body.to_schema()), verbose)

    # --- mode ---

    @app.get("/mode")
    def mode() -> dict[str, str]:
        """Always READWRITE: the embedded registry has no import or read-only modes."""
        return {"mode": "READWRITE"}

    return app
