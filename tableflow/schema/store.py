"""The embedded Schema Registry's store: subjects, versions, global ids and compatibility levels.

Everything lives in the catalog database, in three tables prefixed ``tableflow_registry_``, written with
portable SQLAlchemy Core: SQLite serves one instance, PostgreSQL several sharing a database. Ids and versions
are allocated as ``max + 1`` inside a transaction; when two processes race, the loser hits a unique
constraint, rolls back and retries, so no id is ever handed to two different schemas.

A schema id, once handed out, resolves to the same text forever, even after every version using it was deleted
permanently: records already in Kafka carry the id, and Tableflow must still decode them. That is also why
``get_schema`` may cache by id without ever invalidating.

The store knows nothing of HTTP: it raises ``RegistryError`` subclasses, each carrying the Confluent error
code that the routes answer with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

import avro.errors
import avro.name
import avro.schema
import fastavro
import fastavro.schema
import jsonschema.exceptions
import jsonschema.validators
import sqlalchemy as sa
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
)

from tableflow.errors import DecodeError, SchemaError
from tableflow.schema.registry import RegisteredSchema

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_MAX_VERSION = 2**31 - 1
_MAX_SUBJECT_LENGTH = 255
_GLOBAL = ""  # the config row of the global level: no subject can be empty, a path segment never is
_ATTEMPTS = 30  # racing writers retry this often before the store gives up with a StoreError


# --- errors ----------------------------------------------------------------------------------------------


class RegistryError(SchemaError):
    """A registry request that cannot be served; ``error_code`` is Confluent's, which clients know."""

    error_code: ClassVar[int]


class SubjectNotFound(RegistryError):
    error_code = 40401


class VersionNotFound(RegistryError):
    error_code = 40402


class SchemaNotFound(RegistryError):
    error_code = 40403


class SubjectSoftDeleted(RegistryError):
    error_code = 40404


class SubjectNotSoftDeleted(RegistryError):
    error_code = 40405


class VersionSoftDeleted(RegistryError):
    error_code = 40406


class VersionNotSoftDeleted(RegistryError):
    error_code = 40407


class SubjectCompatibilityNotConfigured(RegistryError):
    error_code = 40408


class IncompatibleSchema(RegistryError):
    error_code = 409


class InvalidSchema(RegistryError):
    error_code = 42201


class InvalidVersion(RegistryError):
    error_code = 42202


class InvalidCompatibilityLevel(RegistryError):
    error_code = 42203


class ReferenceExists(RegistryError):
    error_code = 42206


class InvalidSubject(RegistryError):
    error_code = 42208


class StoreError(RegistryError):
    error_code = 50001


# --- values ----------------------------------------------------------------------------------------------


class Compatibility(StrEnum):
    """Which earlier versions a new schema must stay compatible with, and in which direction."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @classmethod
    def parse(cls, text: str) -> Compatibility:
        try:
            return cls(text.upper())
        except ValueError:
            raise InvalidCompatibilityLevel(
                f"Invalid compatibility level {text!r}. Valid values are {', '.join(level.value for level in cls)}"
            ) from None

    @property
    def backward(self) -> bool:
        """The new schema must read data written with the earlier ones."""
        return self.name.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """The earlier schemas must read data written with the new one."""
        return self.name.startswith(("FORWARD", "FULL"))

    @property
    def transitive(self) -> bool:
        """Against every live version rather than only the latest."""
        return self.name.endswith("_TRANSITIVE")


DEFAULT_COMPATIBILITY = Compatibility.BACKWARD


@dataclass(frozen=True)
class SchemaReference:
    """Another subject's version that a schema's named types or ``$ref`` point at."""

    name: str
    subject: str
    version: int


@dataclass(frozen=True)
class Schema:
    """A schema as submitted or stored: its type, its text and the references it needs."""

    schema_str: str
    schema_type: str = "AVRO"
    references: tuple[SchemaReference, ...] = ()


@dataclass(frozen=True)
class SubjectVersion:
    """One version of a subject and the global id of its schema."""

    subject: str
    version: int
    schema_id: int
    schema: Schema
    deleted: bool = False


def parse_version(text: str) -> int | None:
    """A version as given in a path: a number in [1, 2^31-1], or ``latest`` (also ``-1``), which is None."""
    if text in ("latest", "-1"):
        return None
    if text.isdecimal() and 1 <= int(text) <= _MAX_VERSION:
        return int(text)
    raise InvalidVersion(
        f"The specified version '{text}' is not a valid version id. "
        'Allowed values are between [1, 2^31-1] and the string "latest"'
    )


def validate_subject(subject: str) -> str:
    """Subjects are path segments and database keys: 1-255 characters, no control characters."""
    if not 1 <= len(subject) <= _MAX_SUBJECT_LENGTH or not subject.isprintable():
        raise InvalidSubject(
            f"The specified subject {subject!r} is not valid: use 1 to {_MAX_SUBJECT_LENGTH} printable characters"
        )
    return subject


# --- schema formats --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    """A validated schema: the canonical text that defines its identity, and what compatibility rules read."""

    canonical: str
    model: Any


class _Format(Protocol):
    def parse(self, text: str, referenced: Sequence[str]) -> _Parsed:
        """Validate ``text``, given its references' texts (dependencies first); InvalidSchema if it is bad."""
        ...

    def incompatibilities(self, reader: _Parsed, writer: _Parsed) -> list[str]:
        """What stops ``reader`` from reading data written with ``writer``; empty when it can."""
        ...


def _canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _load_json(text: str, kind: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchema(f"Invalid {kind} schema: not JSON: {exc}") from exc


_AVRO_FIXES: dict[SchemaIncompatibilityType, str] = {
    SchemaIncompatibilityType.reader_field_missing_default_value: (
        "the reader has a field the writer lacks and it has no default; give that field a default"
    ),
    SchemaIncompatibilityType.type_mismatch: (
        "a type changed to one Avro cannot promote; keep the old type "
        "(int->long->float->double and string<->bytes are allowed)"
    ),
    SchemaIncompatibilityType.missing_enum_symbols: (
        "the writer has enum symbols the reader lacks; keep them or give the reader's enum a default"
    ),
    SchemaIncompatibilityType.name_mismatch: "a named type was renamed; keep its name or alias the old one",
    SchemaIncompatibilityType.missing_union_branch: "the writer's union has a branch the reader's lacks",
    SchemaIncompatibilityType.fixed_size_mismatch: "a fixed type changed size; keep the size",
}


def _avro_field_path(schema_json: object, pointer: str) -> str:
    """``/fields/1/type`` as ``field 'email'``: Avro's checker reports pointers, people think in fields."""
    names: list[str] = []
    node, previous = schema_json, ""
    for part in pointer.strip("/").split("/"):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdecimal() and int(part) < len(node):
            node = node[int(part)]
            if previous == "fields" and isinstance(node, dict):
                names.append(str(node.get("name")))
        else:
            break
        previous = part
    return f"field '{'.'.join(names)}'" if names else "the top-level type"


class _Avro:
    """Avro: parsed with fastavro, checked with the ``avro`` package's reader/writer compatibility checker.

    The canonical form is fastavro's parsed schema (full names, no write hints) as sorted compact JSON, so
    whitespace, key order and namespace spelling do not split a schema into two ids. Avro's Parsing Canonical
    Form is not used: it drops defaults and logical types, which change both compatibility and Iceberg types.
    """

    def parse(self, text: str, referenced: Sequence[str]) -> _Parsed:
        documents = [_load_json(ref, "Avro") for ref in referenced]
        document = _load_json(text, "Avro")
        if not isinstance(document, dict | list | str):
            raise InvalidSchema("Invalid Avro schema: it is a JSON object, an array (a union) or a type name")
        named: dict[str, Any] = {}
        names = avro.name.Names()
        try:
            for ref in documents:
                fastavro.parse_schema(ref, named_schemas=named)
                avro.schema.make_avsc_object(ref, names)
            parsed = fastavro.parse_schema(document, named_schemas=named, _write_hint=False)
            model = avro.schema.make_avsc_object(document, names)
        except (
            avro.errors.AvroException,
            fastavro.schema.SchemaParseException,
            ValueError,  # fastavro's UnknownType, and its reactions to malformed parts
            TypeError,
            KeyError,
            AttributeError,
        ) as exc:
            raise InvalidSchema(f"Invalid Avro schema: {exc}") from exc
        return _Parsed(_canonical_json(parsed), model)

    def incompatibilities(self, reader: _Parsed, writer: _Parsed) -> list[str]:
        checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # avro leaves __init__ bare
        result = checker.get_compatibility(reader.model, writer.model)
        if result.compatibility is not SchemaCompatibilityType.incompatible:
            return []
        reader_json = reader.model.to_json()
        problems = ", ".join(sorted({kind.name.upper() for kind in result.incompatibilities}))
        where = ", ".join(_avro_field_path(reader_json, location) for location in sorted(result.locations))
        fixes = "; ".join(dict.fromkeys(_AVRO_FIXES[kind] for kind in result.incompatibilities))
        return [f"{problems} at {where} ({'; '.join(sorted(result.messages))}): {fixes}"]


def _json_types(schema: dict[str, Any]) -> set[str] | None:
    """The JSON types a schema allows; None when it leaves ``type`` out and so allows any."""
    declared = schema.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


class _Json:
    """JSON Schema: checked against its meta-schema with ``jsonschema``; identity is its sorted compact JSON.

    Compatibility is a small rule set, applied to the root and recursively to the ``properties`` both sides
    declare and to ``items``; a reader can read a writer's data when:

    * every property the reader requires, the writer requires too (no new required properties);
    * the reader's ``type`` accepts every type the writer's allows (``number`` accepts ``integer``).

    Out of scope: open versus closed content models (``additionalProperties``, ``patternProperties``),
    ``$ref`` (references are stored, not followed), ``enum``/``const``, combinators (``allOf``, ``anyOf``,
    ``oneOf``) and value constraints such as ``minimum`` or ``maxLength``. Boolean schemas are not compared.
    """

    def parse(self, text: str, referenced: Sequence[str]) -> _Parsed:
        document = _load_json(text, "JSON")
        if not isinstance(document, dict | bool):
            raise InvalidSchema("Invalid JSON schema: a JSON Schema is an object or a boolean")
        try:
            jsonschema.validators.validator_for(document).check_schema(document)
        except jsonschema.exceptions.SchemaError as exc:
            raise InvalidSchema(f"Invalid JSON schema at {exc.json_path}: {exc.message}") from exc
        return _Parsed(_canonical_json(document), document)

    def incompatibilities(self, reader: _Parsed, writer: _Parsed) -> list[str]:
        return self._compare(reader.model, writer.model, "#")

    def _compare(self, reader: object, writer: object, path: str) -> list[str]:
        if not isinstance(reader, dict) or not isinstance(writer, dict):
            return []
        problems: list[str] = []
        reader_types, writer_types = _json_types(reader), _json_types(writer)
        if reader_types is not None and not all(
            kind in reader_types or (kind == "integer" and "number" in reader_types)
            for kind in (writer_types or {"any type"})
        ):
            problems.append(
                f"{path}: the reader's type {sorted(reader_types)} does not accept the writer's "
                f"{sorted(writer_types or {'any'})}; keep the type or widen it (integer may become number)"
            )
        newly_required = set(reader.get("required", [])) - set(writer.get("required", []))
        problems.extend(
            f"{path}/properties/{name}: '{name}' is required by the reader but not by the writer; make it optional"
            for name in sorted(newly_required)
        )
        reader_properties, writer_properties = reader.get("properties", {}), writer.get("properties", {})
        for name in sorted(reader_properties.keys() & writer_properties.keys()):
            problems.extend(
                self._compare(reader_properties[name], writer_properties[name], f"{path}/properties/{name}")
            )
        problems.extend(self._compare(reader.get("items"), writer.get("items"), f"{path}/items"))
        return problems


_FORMATS: dict[str, _Format] = {"AVRO": _Avro(), "JSON": _Json()}
SCHEMA_TYPES = tuple(_FORMATS)  # the schema types the registry accepts


def _format(schema_type: str) -> _Format:
    found = _FORMATS.get(schema_type)
    if found is not None:
        return found
    if schema_type == "PROTOBUF":
        raise InvalidSchema(
            "PROTOBUF schemas are not supported by the embedded registry yet; "
            "use AVRO or JSON, or configure an external schema registry"
        )
    raise InvalidSchema(f"Unknown schemaType {schema_type!r}; use one of {', '.join(SCHEMA_TYPES)}")


# --- tables ----------------------------------------------------------------------------------------------

_metadata = sa.MetaData()
_schemas = sa.Table(
    "tableflow_registry_schemas",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("schema_type", sa.String(16), nullable=False),
    sa.Column("schema_text", sa.Text, nullable=False),
    sa.Column("refs", sa.Text, nullable=False),
)
_versions = sa.Table(
    "tableflow_registry_subject_versions",
    _metadata,
    sa.Column("subject", sa.String(_MAX_SUBJECT_LENGTH), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("schema_id", sa.Integer, sa.ForeignKey(_schemas.c.id), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
)
_config = sa.Table(
    "tableflow_registry_config",
    _metadata,
    sa.Column("subject", sa.String(_MAX_SUBJECT_LENGTH), primary_key=True),
    sa.Column("compatibility", sa.String(32), nullable=False),
)


def _fingerprint(schema_type: str, canonical: str, references: Sequence[SchemaReference]) -> str:
    """What makes two submissions the same schema: type, canonical text and references."""
    refs = [[ref.name, ref.subject, ref.version] for ref in references]
    return hashlib.sha256(_canonical_json([schema_type, canonical, refs]).encode()).hexdigest()


def _schema_from_row(row: sa.Row[Any]) -> Schema:
    refs = tuple(SchemaReference(name, subject, version) for name, subject, version in json.loads(row.refs))
    return Schema(row.schema_text, row.schema_type, refs)


def _retryable(exc: sa.exc.DBAPIError) -> bool:
    """A lost race: a unique key another writer took first, SQLite's write lock, PostgreSQL's deadlock, or a
    table another instance created between our check and our CREATE."""
    if isinstance(exc, sa.exc.IntegrityError):
        return True
    text = str(exc.orig).lower()
    return any(sign in text for sign in ("locked", "deadlock", "could not serialize", "already exists"))


# --- the store -------------------------------------------------------------------------------------------


class SchemaStore:
    """The embedded registry's state: the ingest pipeline's ``SchemaSource`` and the HTTP routes' backend.

    Thread-safe: every operation runs in its own transaction, and the id cache only ever gains entries that
    never change, so it needs no lock.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._by_id: dict[int, Schema] = {}
        self._run(lambda: _metadata.create_all(engine))

    # SchemaSource

    def get_schema(self, schema_id: int) -> RegisteredSchema:
        """The writer schema for a record's id; DecodeError for an id this registry never handed out."""
        try:
            schema = self.schema_by_id(schema_id)
        except SchemaNotFound as exc:
            raise DecodeError(
                f"schema id {schema_id} is not registered in the embedded schema registry; register the "
                "writer's schema here or point producers and Tableflow at the same registry"
            ) from exc
        return RegisteredSchema(schema_id, schema.schema_type, schema.schema_str)

    # schemas by id

    def schema_by_id(self, schema_id: int) -> Schema:
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached

        def read(conn: sa.Connection) -> Schema:
            row = conn.execute(sa.select(_schemas).where(_schemas.c.id == schema_id)).first()
            if row is None:
                raise SchemaNotFound(f"Schema {schema_id} not found")
            return _schema_from_row(row)

        schema = self._transaction(read)
        self._by_id[schema_id] = schema
        return schema

    def versions_of_schema(self, schema_id: int, *, deleted: bool = False) -> list[SubjectVersion]:
        """Every subject version that uses this id, soft-deleted ones only when asked."""
        self.schema_by_id(schema_id)
        rows = self._transaction(lambda conn: self._rows(conn, _versions.c.schema_id == schema_id))
        return [row for row in rows if deleted or not row.deleted]

    # subjects and versions

    def register(self, subject: str, schema: Schema) -> SubjectVersion:
        """Add ``schema`` as the subject's next version, or return the live version that already has it."""
        validate_subject(subject)

        def write(conn: sa.Connection) -> SubjectVersion:
            parsed = self._parse(conn, schema)
            fingerprint = _fingerprint(schema.schema_type, parsed.canonical, schema.references)
            schema_id = self._id_of(conn, fingerprint)
            rows = self._subject_rows(conn, subject)
            live = [row for row in rows if not row.deleted]
            for row in live:
                if row.schema_id == schema_id:
                    return row
            level = self._compatibility(conn, subject)
            problems = self._incompatibilities(conn, level, schema, parsed, live)
            if problems:
                raise IncompatibleSchema(
                    f'Schema being registered is incompatible with an earlier schema for subject "{subject}" '
                    f"(compatibility {level}), details: {'; '.join(problems)}. Change the schema, or relax "
                    "the subject's compatibility level"
                )
            if schema_id is None:
                schema_id = self._next(conn, _schemas.c.id)
                conn.execute(
                    _schemas.insert().values(
                        id=schema_id,
                        fingerprint=fingerprint,
                        schema_type=schema.schema_type,
                        schema_text=schema.schema_str,
                        refs=json.dumps([[ref.name, ref.subject, ref.version] for ref in schema.references]),
                    )
                )
            version = max((row.version for row in rows), default=0) + 1
            conn.execute(_versions.insert().values(subject=subject, version=version, schema_id=schema_id))
            stored = self._schema_from_id(conn, schema_id)
            logger.info("registered %s version %d as schema id %d", subject, version, schema_id)
            return SubjectVersion(subject, version, schema_id, stored)

        return self._transaction(write)

    def lookup(self, subject: str, schema: Schema, *, deleted: bool = False) -> SubjectVersion:
        """The subject's (latest) version holding this schema; SchemaNotFound when it has none."""

        def read(conn: sa.Connection) -> SubjectVersion:
            rows = self._visible(conn, subject, deleted)
            parsed = self._parse(conn, schema)
            schema_id = self._id_of(conn, _fingerprint(schema.schema_type, parsed.canonical, schema.references))
            for row in reversed(rows):
                if row.schema_id == schema_id:
                    return row
            raise SchemaNotFound(f"Schema not found under subject '{subject}'; register it first")

        return self._transaction(read)

    def subjects(self, *, deleted: bool = False, prefix: str = "") -> list[str]:
        def read(conn: sa.Connection) -> list[str]:
            query = sa.select(_versions.c.subject).distinct().order_by(_versions.c.subject)
            if not deleted:
                query = query.where(_versions.c.deleted.is_(False))
            return [subject for subject in conn.execute(query).scalars() if subject.startswith(prefix)]

        return self._transaction(read)

    def versions(self, subject: str, *, deleted: bool = False) -> list[int]:
        return [row.version for row in self._transaction(lambda conn: self._visible(conn, subject, deleted))]

    def version(self, subject: str, version: int | None, *, deleted: bool = False) -> SubjectVersion:
        """One version of a subject; None means the latest."""
        rows = self._transaction(lambda conn: self._visible(conn, subject, deleted))
        return self._pick(rows, version)

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Soft-delete every live version, or (``permanent``, after a soft delete) remove the subject."""

        def write(conn: sa.Connection) -> list[int]:
            rows = self._subject_rows(conn, subject)
            if not rows:
                raise SubjectNotFound(f"Subject '{subject}' not found.")
            live = [row.version for row in rows if not row.deleted]
            if permanent:
                if live:
                    raise SubjectNotSoftDeleted(
                        f"Subject '{subject}' was not deleted first before being permanently deleted; "
                        "delete it without permanent=true first"
                    )
                conn.execute(_versions.delete().where(_versions.c.subject == subject))
                conn.execute(_config.delete().where(_config.c.subject == subject))
                logger.info("permanently deleted subject %s", subject)
                return [row.version for row in rows]
            if not live:
                raise SubjectSoftDeleted(
                    f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
                )
            self._check_unreferenced(conn, subject, live)
            conn.execute(_versions.update().where(_versions.c.subject == subject).values(deleted=True))
            logger.info("soft-deleted subject %s versions %s", subject, live)
            return live

        return self._transaction(write)

    def delete_version(self, subject: str, version: int | None, *, permanent: bool = False) -> int:
        """Soft-delete one version (None: the latest), or (``permanent``, after a soft delete) remove it."""

        def write(conn: sa.Connection) -> int:
            rows = self._subject_rows(conn, subject)
            if not rows:
                raise SubjectNotFound(f"Subject '{subject}' not found.")
            # "latest" is the newest live version for a soft delete; a numbered one is looked up among all
            candidates = rows if permanent or version is not None else [row for row in rows if not row.deleted]
            row = self._pick(candidates, version)
            where = (_versions.c.subject == subject) & (_versions.c.version == row.version)
            if permanent:
                if not row.deleted:
                    raise VersionNotSoftDeleted(
                        f"Subject '{subject}' Version {row.version} was not deleted first before being "
                        "permanently deleted; delete it without permanent=true first"
                    )
                conn.execute(_versions.delete().where(where))
            elif row.deleted:
                raise VersionSoftDeleted(
                    f"Subject '{subject}' Version {row.version} was soft deleted. "
                    "Set permanent=true to delete permanently"
                )
            else:
                self._check_unreferenced(conn, subject, [row.version])
                conn.execute(_versions.update().where(where).values(deleted=True))
            logger.info("deleted %s version %d (permanent=%s)", subject, row.version, permanent)
            return row.version

        return self._transaction(write)

    # compatibility

    def get_compatibility(self, subject: str | None = None, *, default_to_global: bool = True) -> Compatibility:
        """The level in force: a subject's own, else the global one; with ``default_to_global`` off, a subject
        without its own level is SubjectCompatibilityNotConfigured."""

        def read(conn: sa.Connection) -> Compatibility:
            if subject is not None and not default_to_global:
                own = self._configured(conn, subject)
                if own is None:
                    raise SubjectCompatibilityNotConfigured(
                        f"Subject '{subject}' does not have subject-level compatibility configured; "
                        "add defaultToGlobal=true to get the global level"
                    )
                return own
            return self._compatibility(conn, subject)

        return self._transaction(read)

    def set_compatibility(self, subject: str | None, level: Compatibility) -> None:
        """Set a subject's level, or the global one when ``subject`` is None."""
        key = _GLOBAL if subject is None else validate_subject(subject)

        def write(conn: sa.Connection) -> None:
            updated = conn.execute(_config.update().where(_config.c.subject == key).values(compatibility=level))
            if updated.rowcount == 0:
                conn.execute(_config.insert().values(subject=key, compatibility=level))

        self._transaction(write)

    def delete_compatibility(self, subject: str | None) -> Compatibility:
        """Drop a subject's own level (or reset the global one to BACKWARD); answers the one that was set."""
        key = _GLOBAL if subject is None else subject

        def write(conn: sa.Connection) -> Compatibility:
            old = self._configured(conn, key)
            if old is None and subject is not None:
                raise SubjectNotFound(f"Subject '{subject}' has no subject-level compatibility to delete")
            conn.execute(_config.delete().where(_config.c.subject == key))
            return old or DEFAULT_COMPATIBILITY

        return self._transaction(write)

    def check_compatibility(self, subject: str, schema: Schema, version: int | None = None) -> list[str]:
        """Why ``schema`` breaks the subject's level against ``version``; empty when it does not.

        With a version, only that version is compared (in the level's directions); with None, the versions a
        registration would be compared with, so a subject without live versions accepts anything.
        """

        def read(conn: sa.Connection) -> list[str]:
            parsed = self._parse(conn, schema)
            level = self._compatibility(conn, subject)
            if version is None:
                live = [row for row in self._subject_rows(conn, subject) if not row.deleted]
                return self._incompatibilities(conn, level, schema, parsed, live)
            target = self._pick(self._visible(conn, subject, False), version)
            return self._incompatibilities(conn, level, schema, parsed, [target], every=True)

        return self._transaction(read)

    # internals

    def _run(self, action: Callable[[], _T]) -> _T:
        """Run ``action``, retrying lost races after a jittered pause; other database errors: StoreError."""
        for attempt in range(_ATTEMPTS):
            try:
                return action()
            except sa.exc.DBAPIError as exc:
                if not _retryable(exc) or attempt == _ATTEMPTS - 1:
                    raise StoreError(f"Schema registry store error: {exc.orig}") from exc
                logger.debug("registry write lost a race (attempt %d), retrying: %s", attempt + 1, exc.orig)
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"Schema registry store error: {exc}") from exc
        raise AssertionError("unreachable: the last attempt raises")

    def _transaction(self, work: Callable[[sa.Connection], _T]) -> _T:
        def attempt() -> _T:
            with self._engine.begin() as conn:
                return work(conn)

        return self._run(attempt)

    @staticmethod
    def _rows(conn: sa.Connection, where: sa.ColumnElement[bool]) -> list[SubjectVersion]:
        """The subject versions matching ``where``, soft-deleted ones included, by subject then version."""
        query = (
            sa.select(_versions.c.subject, _versions.c.version, _versions.c.schema_id, _versions.c.deleted, _schemas)
            .join(_schemas, _schemas.c.id == _versions.c.schema_id)
            .where(where)
            .order_by(_versions.c.subject, _versions.c.version)
        )
        return [
            SubjectVersion(row.subject, row.version, row.schema_id, _schema_from_row(row), bool(row.deleted))
            for row in conn.execute(query)
        ]

    def _subject_rows(self, conn: sa.Connection, subject: str) -> list[SubjectVersion]:
        return self._rows(conn, _versions.c.subject == subject)

    def _visible(self, conn: sa.Connection, subject: str, deleted: bool) -> list[SubjectVersion]:
        """The versions a reader sees (soft-deleted ones only if asked); SubjectNotFound if there are none."""
        rows = [row for row in self._subject_rows(conn, subject) if deleted or not row.deleted]
        if not rows:
            raise SubjectNotFound(f"Subject '{subject}' not found.")
        return rows

    @staticmethod
    def _pick(rows: Sequence[SubjectVersion], version: int | None) -> SubjectVersion:
        if not rows:
            raise VersionNotFound("Version latest not found: the subject has no live versions")
        if version is None:
            return rows[-1]
        for row in rows:
            if row.version == version:
                return row
        raise VersionNotFound(f"Version {version} not found.")

    def _schema_from_id(self, conn: sa.Connection, schema_id: int) -> Schema:
        row = conn.execute(sa.select(_schemas).where(_schemas.c.id == schema_id)).one()
        return _schema_from_row(row)

    @staticmethod
    def _next(conn: sa.Connection, column: sa.Column[int]) -> int:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(column), 0))).scalar_one()) + 1

    def _parse(self, conn: sa.Connection, schema: Schema) -> _Parsed:
        # a type two references share is defined once
        referenced = list(dict.fromkeys(self._referenced(conn, schema.references)))
        return _format(schema.schema_type).parse(schema.schema_str, referenced)

    def _check_unreferenced(self, conn: sa.Connection, subject: str, versions: Collection[int]) -> None:
        """Refuse to delete versions that live schemas reference: those could no longer be parsed."""
        referrers = [
            f"subject '{row.subject}' version {row.version} (id {row.schema_id})"
            for row in self._rows(conn, _versions.c.deleted.is_(False))
            if any(ref.subject == subject and ref.version in versions for ref in row.schema.references)
        ]
        if referrers:
            raise ReferenceExists(
                f"Subject '{subject}' versions {sorted(versions)} are referenced by {', '.join(referrers)}; "
                "delete those first"
            )

    @staticmethod
    def _id_of(conn: sa.Connection, fingerprint: str) -> int | None:
        return conn.execute(sa.select(_schemas.c.id).where(_schemas.c.fingerprint == fingerprint)).scalar_one_or_none()

    def _referenced(self, conn: sa.Connection, references: Iterable[SchemaReference]) -> list[str]:
        """The texts of the schemas ``references`` point at, each after its own references.

        No cycle can arise: a reference must point at a version registered before the schema naming it.
        """
        texts: list[str] = []
        for ref in references:
            schema_id = conn.execute(
                sa.select(_versions.c.schema_id).where(
                    (_versions.c.subject == ref.subject) & (_versions.c.version == ref.version)
                )
            ).scalar_one_or_none()
            if schema_id is None:
                raise InvalidSchema(
                    f"Invalid schema: reference {ref.name!r} points at subject '{ref.subject}' version "
                    f"{ref.version}, which is not registered; register that schema first"
                )
            target = self._schema_from_id(conn, schema_id)
            texts.extend(self._referenced(conn, target.references))
            texts.append(target.schema_str)
        return texts

    def _configured(self, conn: sa.Connection, key: str) -> Compatibility | None:
        value = conn.execute(sa.select(_config.c.compatibility).where(_config.c.subject == key)).scalar()
        return None if value is None else Compatibility(value)

    def _compatibility(self, conn: sa.Connection, subject: str | None) -> Compatibility:
        own = None if subject is None else self._configured(conn, subject)
        return own or self._configured(conn, _GLOBAL) or DEFAULT_COMPATIBILITY

    def _incompatibilities(
        self,
        conn: sa.Connection,
        level: Compatibility,
        schema: Schema,
        parsed: _Parsed,
        previous: Sequence[SubjectVersion],
        *,
        every: bool = False,
    ) -> list[str]:
        """What breaks ``level`` between the new schema and ``previous`` (the latest only unless transitive or
        ``every``)."""
        if level is Compatibility.NONE:
            return []
        compared = previous if level.transitive or every else previous[-1:]
        problems: list[str] = []
        for old in compared:
            if old.schema.schema_type != schema.schema_type:
                problems.append(
                    f"version {old.version}: the schema type changed from {old.schema.schema_type} to "
                    f"{schema.schema_type}; register it under another subject"
                )
                continue
            fmt = _format(schema.schema_type)
            old_parsed = self._parse(conn, old.schema)
            if level.backward:
                problems.extend(
                    f"version {old.version} (new schema reading its data): {problem}"
                    for problem in fmt.incompatibilities(parsed, old_parsed)
                )
            if level.forward:
                problems.extend(
                    f"version {old.version} (it reading the new schema's data): {problem}"
                    for problem in fmt.incompatibilities(old_parsed, parsed)
                )
        return problems
