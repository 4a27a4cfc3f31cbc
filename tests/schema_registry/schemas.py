"""Small builders for the schemas the registry tests register."""

from __future__ import annotations

import json
from typing import Any

NO_DEFAULT = object()


def field(name: str, type_: object, default: object = NO_DEFAULT) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "type": type_}
    if default is not NO_DEFAULT:
        spec["default"] = default
    return spec


def record(*fields: dict[str, Any], name: str = "User") -> str:
    """An Avro record schema's text."""
    return json.dumps({"type": "record", "name": name, "namespace": "test", "fields": list(fields)})


def json_object(properties: dict[str, str], required: tuple[str, ...] = ()) -> str:
    """A JSON Schema object's text; ``properties`` maps names to JSON types."""
    return json.dumps(
        {
            "type": "object",
            "properties": {name: {"type": kind} for name, kind in properties.items()},
            "required": list(required),
        }
    )


USER_V1 = record(field("id", "long"))
USER_WITH_EMAIL_DEFAULT = record(field("id", "long"), field("email", "string", ""))
USER_WITH_EMAIL = record(field("id", "long"), field("email", "string"))
