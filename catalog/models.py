"""Request bodies of the REST catalog, as the spec defines them.

pyiceberg's own models are reused for everything inside a request (schemas, partition specs, sort orders,
table requirements and updates); these wrappers only exist where pyiceberg's client-side models are stricter
or looser than the spec (for example, pyiceberg makes ``location`` required on create, the spec does not).
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import TableIdentifier
from pyiceberg.table.sorting import SortOrder
from pyiceberg.table.update import TableRequirement, TableUpdate


class _Request(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    @model_validator(mode="wrap")
    @classmethod
    def _malformed_is_invalid(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """pyiceberg's models raise TypeError and friends on malformed input; make those validation errors."""
        try:
            return handler(data)
        except ValidationError:
            raise
        except Exception as exc:  # whatever pyiceberg raises, the request was malformed
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc


class CreateNamespaceRequest(_Request):
    namespace: list[str]
    properties: dict[str, str] = Field(default_factory=dict)


class UpdateNamespacePropertiesRequest(_Request):
    removals: list[str] = Field(default_factory=list)
    updates: dict[str, str] = Field(default_factory=dict)


class CreateTableRequest(_Request):
    name: str
    location: str | None = None
    table_schema: Schema = Field(alias="schema")
    partition_spec: PartitionSpec | None = Field(default=None, alias="partition-spec")
    write_order: SortOrder | None = Field(default=None, alias="write-order")
    stage_create: bool = Field(default=False, alias="stage-create")
    properties: dict[str, str] = Field(default_factory=dict)


class RegisterTableRequest(_Request):
    name: str
    metadata_location: str = Field(alias="metadata-location")
    overwrite: bool = False


class RenameTableRequest(_Request):
    source: TableIdentifier
    destination: TableIdentifier


class CommitTableRequest(_Request):
    """One table's changes; ``identifier`` is required in a transaction, optional on the table's URL."""

    identifier: TableIdentifier | None = None
    requirements: tuple[TableRequirement, ...] = ()
    updates: tuple[TableUpdate, ...] = ()


class CommitTransactionRequest(_Request):
    table_changes: list[CommitTableRequest] = Field(alias="table-changes")

    @field_validator("table_changes")
    @classmethod
    def _identified(cls, value: list[CommitTableRequest]) -> list[CommitTableRequest]:
        if not value:
            raise ValueError("a transaction needs at least one entry in table-changes")
        if any(change.identifier is None for change in value):
            raise ValueError("every entry in table-changes needs an identifier")
        return value


class ReportMetricsRequest(_Request):
    """Scan and commit reports; only logged, so anything past the report type passes through."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    report_type: str = Field(alias="report-type")
    table_name: str = Field(alias="table-name")
    snapshot_id: int = Field(alias="snapshot-id")

    def summary(self) -> dict[str, Any]:
        return {
            "report-type": self.report_type,
            "table-name": self.table_name,
            "snapshot-id": self.snapshot_id,
        }
