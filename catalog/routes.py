"""HTTP routes of the Iceberg REST catalog, in the order the OpenAPI spec lists them.

Every route exists twice: under ``/v1/{prefix}/...`` (the prefix ``GET /v1/config`` hands out, which is
the catalog's name) and under ``/v1/...`` for clients that take no prefix. Namespace levels in paths are
joined with the unit separator (``%1F``). Handlers are plain functions because the store blocks (SQL, file
IO); FastAPI runs them in its thread pool.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse
from pyiceberg.table import TableIdentifier
from pyiceberg.typedef import Identifier

from api.auth import Authenticator, Role
from catalog.errors import (
    BadRequestError,
    NoSuchNamespaceError,
    NoSuchTableError,
    NoSuchViewError,
    NoSuchWarehouseError,
)
from catalog.models import (
    CommitTableRequest,
    CommitTransactionRequest,
    CreateNamespaceRequest,
    CreateTableRequest,
    RegisterTableRequest,
    RenameTableRequest,
    ReportMetricsRequest,
    UpdateNamespacePropertiesRequest,
)
from catalog.store import CatalogStore, LoadedTable, TableChange, check_namespace, check_table_name

logger = logging.getLogger(__name__)

SEPARATOR = "\x1f"
_JSON = "application/json"

PageToken = Annotated[str | None, Query(alias="pageToken")]
PageSize = Annotated[int | None, Query(alias="pageSize", ge=1)]


def parse_namespace(raw: str) -> Identifier:
    """Path form to levels: ``a%1Fb`` arrives decoded as ``a\\x1fb``."""
    return check_namespace(raw.split(SEPARATOR))


def parse_identifier(namespace: str, table: str) -> Identifier:
    return (*parse_namespace(namespace), check_table_name(table))


def _identifier(value: TableIdentifier) -> Identifier:
    return (*check_namespace(value.namespace.root), check_table_name(value.name))


def paginate(
    items: list[Identifier], page_token: str | None, page_size: int | None
) -> tuple[list[Identifier], str | None]:
    """Keyset pagination over sorted identifiers; the token is the last identifier served, encoded.

    As the spec asks, results only come in pages when the request carries ``pageToken`` (empty for the first).
    """
    if page_token is None:
        return items, None
    start = 0
    if page_token:
        try:
            after = tuple(json.loads(base64.urlsafe_b64decode(page_token.encode("ascii") + b"==")))
        except (ValueError, UnicodeError, binascii.Error) as exc:
            raise BadRequestError("pageToken is not a token this server issued; start again without one") from exc
        start = bisect.bisect_right(items, after)
    if page_size is None:
        return items[start:], None
    page = items[start : start + page_size]
    if start + page_size >= len(items):
        return page, None
    token = base64.urlsafe_b64encode(json.dumps(list(page[-1])).encode()).decode("ascii").rstrip("=")
    return page, token


def _json(body: Any, status_code: int = 200) -> Response:
    return JSONResponse(body, status_code=status_code)


def _no_content() -> Response:
    return Response(status_code=204)


class _Handlers:
    """The route functions, bound to one store."""

    def __init__(self, store: CatalogStore, catalog_name: str) -> None:
        self.store = store
        self.catalog_name = catalog_name

    def table_result(self, loaded: LoadedTable, snapshots: str = "all") -> Response:
        """``LoadTableResult``, spliced from cached JSON rather than re-serialized on every load."""
        metadata_json = loaded.metadata_json
        if snapshots == "refs":
            referenced = {ref.snapshot_id for ref in loaded.metadata.refs.values()}
            kept = [s for s in loaded.metadata.snapshots if s.snapshot_id in referenced]
            metadata_json = loaded.metadata.model_copy(update={"snapshots": kept}).model_dump_json()
        head = ""
        if loaded.metadata_location is not None:
            head = f'"metadata-location":{json.dumps(loaded.metadata_location)},'
        config = json.dumps(self.store.storage_config(loaded.metadata.location))
        body = f'{{{head}"metadata":{metadata_json},"config":{config}}}'
        return Response(body, media_type=_JSON)

    # Namespaces

    def list_namespaces(
        self,
        page_token: PageToken = None,
        page_size: PageSize = None,
        parent: Annotated[str | None, Query()] = None,
    ) -> Response:
        parent_id = parse_namespace(parent) if parent else ()
        items, token = paginate(self.store.list_namespaces(parent_id), page_token, page_size)
        return _json({"namespaces": [list(ns) for ns in items], "next-page-token": token})

    def create_namespace(self, body: CreateNamespaceRequest) -> Response:
        namespace = check_namespace(body.namespace)
        properties = self.store.create_namespace(namespace, body.properties)
        return _json({"namespace": list(namespace), "properties": properties})

    def load_namespace(self, namespace: str) -> Response:
        levels = parse_namespace(namespace)
        return _json({"namespace": list(levels), "properties": self.store.load_namespace(levels)})

    def namespace_exists(self, namespace: str) -> Response:
        levels = parse_namespace(namespace)
        if not self.store.namespace_exists(levels):
            raise NoSuchNamespaceError(f"namespace {'.'.join(levels)!r} does not exist")
        return _no_content()

    def drop_namespace(self, namespace: str) -> Response:
        self.store.drop_namespace(parse_namespace(namespace))
        return _no_content()

    def update_namespace(self, namespace: str, body: UpdateNamespacePropertiesRequest) -> Response:
        summary = self.store.update_namespace(parse_namespace(namespace), body.removals, body.updates)
        return _json(
            {
                "updated": sorted(summary.updated),
                "removed": sorted(summary.removed),
                "missing": sorted(summary.missing),
            }
        )

    # Tables

    def list_tables(self, namespace: str, page_token: PageToken = None, page_size: PageSize = None) -> Response:
        items, token = paginate(self.store.list_tables(parse_namespace(namespace)), page_token, page_size)
        identifiers = [{"namespace": list(item[:-1]), "name": item[-1]} for item in items]
        return _json({"identifiers": identifiers, "next-page-token": token})

    def create_table(self, namespace: str, body: CreateTableRequest) -> Response:
        return self.table_result(self.store.create_table(parse_namespace(namespace), body))

    def register_table(self, namespace: str, body: RegisterTableRequest) -> Response:
        identifier = (*parse_namespace(namespace), check_table_name(body.name))
        return self.table_result(self.store.register_table(identifier, body.metadata_location, body.overwrite))

    def load_table(
        self, namespace: str, table: str, snapshots: Annotated[Literal["all", "refs"], Query()] = "all"
    ) -> Response:
        return self.table_result(self.store.load_table(parse_identifier(namespace, table)), snapshots)

    def table_exists(self, namespace: str, table: str) -> Response:
        identifier = parse_identifier(namespace, table)
        if not self.store.table_exists(identifier):
            raise NoSuchTableError(f"table {'.'.join(identifier)!r} does not exist")
        return _no_content()

    def update_table(self, namespace: str, table: str, body: CommitTableRequest) -> Response:
        identifier = parse_identifier(namespace, table)
        if body.identifier is not None and _identifier(body.identifier) != identifier:
            raise BadRequestError(
                f"request identifier {'.'.join(_identifier(body.identifier))!r} does not match the URL's "
                f"{'.'.join(identifier)!r}"
            )
        (result,) = self.store.commit([TableChange(identifier, body.requirements, body.updates)])
        location = json.dumps(result.metadata_location)
        return Response(f'{{"metadata-location":{location},"metadata":{result.metadata_json}}}', media_type=_JSON)

    def drop_table(
        self, namespace: str, table: str, purge: Annotated[bool, Query(alias="purgeRequested")] = False
    ) -> Response:
        self.store.drop_table(parse_identifier(namespace, table), purge)
        return _no_content()

    def load_credentials(self, namespace: str, table: str) -> Response:
        loaded = self.store.load_table(parse_identifier(namespace, table))
        config = self.store.storage_config(loaded.metadata.location)
        credentials = [{"prefix": loaded.metadata.location, "config": config}] if config else []
        return _json({"storage-credentials": credentials})

    def rename_table(self, body: RenameTableRequest) -> Response:
        self.store.rename_table(_identifier(body.source), _identifier(body.destination))
        return _no_content()

    def report_metrics(self, namespace: str, table: str, body: ReportMetricsRequest) -> Response:
        identifier = parse_identifier(namespace, table)
        self.store.load_table(identifier)
        logger.debug("metrics report for %s: %s", ".".join(identifier), body.summary())
        return _no_content()

    def commit_transaction(self, body: CommitTransactionRequest) -> Response:
        changes = []
        for change in body.table_changes:
            assert change.identifier is not None  # the model guarantees it
            changes.append(TableChange(_identifier(change.identifier), change.requirements, change.updates))
        self.store.commit(changes)
        return _no_content()

    # Views: none are stored yet; the probes engines make (list, load, exists) get correct answers.

    def list_views(self, namespace: str, page_token: PageToken = None, page_size: PageSize = None) -> Response:
        levels = parse_namespace(namespace)
        if not self.store.namespace_exists(levels):
            raise NoSuchNamespaceError(f"namespace {'.'.join(levels)!r} does not exist")
        return _json({"identifiers": [], "next-page-token": None})

    def load_view(self, namespace: str, view: str) -> Response:
        levels = parse_namespace(namespace)
        raise NoSuchViewError(f"view {'.'.join((*levels, view))!r} does not exist")

    def view_exists(self, namespace: str, view: str) -> Response:
        return self.load_view(namespace, view)

    def warehouse_config(self, warehouse: Annotated[str | None, Query()] = None) -> Response:
        """``GET /v1/config``: the one warehouse answers to its name, to 'warehouse' and to its location."""
        location = (self.store.warehouse or "").rstrip("/")
        accepted = {self.catalog_name, "warehouse", location}
        if warehouse and warehouse.rstrip("/") not in accepted:
            raise NoSuchWarehouseError(
                f"no warehouse {warehouse!r}; this catalog serves one warehouse, named {self.catalog_name!r} "
                f"(also reachable as 'warehouse' or by its location {location!r})"
            )
        return _json(
            {
                "defaults": {},
                "overrides": {"prefix": self.catalog_name},
                "endpoints": endpoint_list(),
            }
        )


_Route = tuple[str, str, str, Role]
# (method, path, handler name, minimum role)
ROUTES: tuple[_Route, ...] = (
    ("GET", "/namespaces", "list_namespaces", "reader"),
    ("POST", "/namespaces", "create_namespace", "writer"),
    ("GET", "/namespaces/{namespace}", "load_namespace", "reader"),
    ("HEAD", "/namespaces/{namespace}", "namespace_exists", "reader"),
    ("DELETE", "/namespaces/{namespace}", "drop_namespace", "writer"),
    ("POST", "/namespaces/{namespace}/properties", "update_namespace", "writer"),
    ("GET", "/namespaces/{namespace}/tables", "list_tables", "reader"),
    ("POST", "/namespaces/{namespace}/tables", "create_table", "writer"),
    ("POST", "/namespaces/{namespace}/register", "register_table", "writer"),
    ("GET", "/namespaces/{namespace}/tables/{table}", "load_table", "reader"),
    ("HEAD", "/namespaces/{namespace}/tables/{table}", "table_exists", "reader"),
    ("POST", "/namespaces/{namespace}/tables/{table}", "update_table", "writer"),
    ("DELETE", "/namespaces/{namespace}/tables/{table}", "drop_table", "writer"),
    ("GET", "/namespaces/{namespace}/tables/{table}/credentials", "load_credentials", "reader"),
    ("POST", "/tables/rename", "rename_table", "writer"),
    ("POST", "/namespaces/{namespace}/tables/{table}/metrics", "report_metrics", "reader"),
    ("POST", "/transactions/commit", "commit_transaction", "writer"),
    ("GET", "/namespaces/{namespace}/views", "list_views", "reader"),
    ("GET", "/namespaces/{namespace}/views/{view}", "load_view", "reader"),
    ("HEAD", "/namespaces/{namespace}/views/{view}", "view_exists", "reader"),
)


def endpoint_list() -> list[str]:
    """The ``endpoints`` of ``GET /v1/config``, in the spec's ``<VERB> <path>`` form."""
    return [f"{method} /v1/{{prefix}}{path}" for method, path, _, _ in ROUTES]


def build_router(store: CatalogStore, auth: Authenticator, catalog_name: str) -> APIRouter:
    """All routes: ``/v1/config``, ``/v1/oauth/tokens``, then the catalog API without and with the prefix."""
    handlers = _Handlers(store, catalog_name)

    def check_prefix(prefix: str) -> None:
        if prefix != catalog_name:
            raise NoSuchWarehouseError(
                f"unknown prefix {prefix!r}; this catalog's prefix is {catalog_name!r} (GET /v1/config)"
            )

    def catalog_routes() -> APIRouter:
        router = APIRouter()
        for method, path, name, role in ROUTES:
            endpoint: Callable[..., Response] = getattr(handlers, name)
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                dependencies=[Depends(auth.require(role))],
                response_class=Response,
                name=name,
            )
        return router

    root = APIRouter()
    root.add_api_route(
        "/v1/config",
        handlers.warehouse_config,
        methods=["GET"],
        dependencies=[Depends(auth.require("reader"))],
        response_class=Response,
    )
    root.add_api_route("/v1/oauth/tokens", auth.token_endpoint, methods=["POST"], response_class=Response)
    root.include_router(catalog_routes(), prefix="/v1")
    root.include_router(catalog_routes(), prefix="/v1/{prefix}", dependencies=[Depends(check_prefix)])
    return root
