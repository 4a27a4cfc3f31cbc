"""A small client for the management API (``/api/v1``): what the CLI and scripts use.

Responses are the API's JSON resources as dicts; any error answer becomes ``ClientError`` carrying the
server's ``code``, ``message`` and ``field``, so callers show the server's own explanation.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from tableflow.errors import TableflowError

DEFAULT_SERVER = "http://127.0.0.1:8181"


class ClientError(TableflowError):
    """The server refused a request, or could not be reached (``status`` 0)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status} {code})" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class TableflowClient:
    """Talks to one server; ``token`` is a bearer token or a client secret (API key) when auth is on."""

    def __init__(self, server: str = DEFAULT_SERVER, token: str | None = None, timeout_s: float = 90.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._server = server.rstrip("/")
        self._http = httpx.Client(base_url=f"{self._server}/api/v1", headers=headers, timeout=timeout_s)

    def list_tables(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/tables")
        return result

    def get_table(self, identifier: str) -> dict[str, Any]:
        return self._resource("GET", _path(identifier))

    def create_table(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config``: the table config fields, plus ``create_topic``/``partitions`` to create the topic."""
        return self._resource("POST", "/tables", json=dict(config))

    def update_table(self, identifier: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        return self._resource("PATCH", _path(identifier), json=dict(changes))

    def pause_table(self, identifier: str) -> dict[str, Any]:
        return self._resource("POST", f"{_path(identifier)}/pause")

    def resume_table(self, identifier: str) -> dict[str, Any]:
        return self._resource("POST", f"{_path(identifier)}/resume")

    def delete_table(self, identifier: str, purge: bool = False) -> None:
        self._call("DELETE", _path(identifier), params={"purge": "true" if purge else "false"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TableflowClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _resource(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call(method, path, **kwargs)
        return result

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(
                0, "unreachable", f"cannot reach the Tableflow server at {self._server} ({exc}); check --server"
            ) from exc
        if response.is_success:
            return response.json() if response.content else None
        try:
            error = response.json()["error"]
            code, message, field = str(error["code"]), str(error["message"]), error.get("field")
        except (ValueError, KeyError, TypeError):  # not the API's error shape (a proxy, another service)
            code, message, field = "http_error", response.text[:500] or response.reason_phrase, None
        raise ClientError(response.status_code, code, message, field)


def _path(identifier: str) -> str:
    return f"/tables/{quote(identifier, safe='')}"
