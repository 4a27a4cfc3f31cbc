"""``/api/v1/tables``: enable a topic as a table, see its state, change, pause, resume and delete it.

The POST body is the table config of the YAML file (``TableSettings``, the same model, so the file and the API
validate alike) plus options for creating the topic. Reads need the ``reader`` role, changes ``admin``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.auth import Authenticator
from tableflow.config import TableSettings
from tableflow.ingest.service import Ingestor, ManagedTable, Source
from tableflow.ingest.status import State

_CREATION_FIELDS = frozenset({"create_topic", "partitions", "replication_factor"})


class CreateTable(TableSettings):
    """A table config, plus whether to create its topic when it does not exist."""

    create_topic: bool = Field(default=False, description="create the topic if it does not exist")
    partitions: int | None = Field(default=None, ge=1, description="partitions of a created topic (default 1)")
    replication_factor: int | None = Field(
        default=None, ge=1, description="replicas of a created topic (default: the broker's default)"
    )

    @model_validator(mode="after")
    def _creation_options(self) -> CreateTable:
        if not self.create_topic and (self.partitions is not None or self.replication_factor is not None):
            raise ValueError('partitions and replication_factor only apply with "create_topic": true')
        return self

    def table_settings(self) -> TableSettings:
        return TableSettings.model_validate(self.model_dump(exclude_unset=True, exclude=set(_CREATION_FIELDS)))


class TablePatch(BaseModel):
    """The settings that can change on a live table; leave a field out to keep it.

    ``partition_by`` adds partition fields to the table's spec (at the next commit, once the source column
    exists); fields already in the spec stay. ``properties`` replaces the table's property overrides.
    """

    model_config = ConfigDict(extra="forbid")

    commit_interval_s: float | None = None
    max_buffer_bytes: int | None = None
    max_buffer_records: int | None = None
    on_error: Literal["dlq", "skip", "suspend"] | None = None
    partition_by: list[str] | None = None
    properties: dict[str, str] | None = None


PATCHABLE_FIELDS: tuple[str, ...] = tuple(TablePatch.model_fields)


class PartitionStatus(BaseModel):
    partition: int
    committed_offset: int | None = Field(description="next offset the table holds; null before the first commit")
    high_watermark: int | None = Field(description="the partition's end; null when Kafka did not answer")
    lag: int | None = Field(description="records in the topic not yet in the table")


class LastError(BaseModel):
    message: str
    time: datetime
    partition: int | None
    offset: int | None


class TableStatusBody(BaseModel):
    """Live state: positions and snapshot from the table, counters since this process started."""

    state: State
    partitions: list[PartitionStatus]
    lag: int | None = Field(description="sum over partitions; null when Kafka did not answer")
    last_commit_at: datetime | None
    last_snapshot_id: int | None
    records_total: int
    bytes_total: int
    dlq_records_total: int
    skipped_records_total: int
    commits_total: int
    errors_total: int
    last_error: LastError | None


class TableResource(BaseModel):
    identifier: str = Field(description="the Iceberg table, namespace.name")
    source: Source = Field(description="file: from the config file (read-only here); api: created through the API")
    config: TableSettings
    status: TableStatusBody


def tables_router(ingestor: Ingestor, auth: Authenticator) -> APIRouter:
    """The routes; handlers are plain functions, so FastAPI runs their blocking calls in its thread pool."""
    read = [Depends(auth.require("reader"))]
    admin = [Depends(auth.require("admin"))]
    router = APIRouter(prefix="/tables", tags=["tables"])

    def resource(managed: ManagedTable) -> TableResource:
        table, counters = managed.settings, managed.worker.status
        progress = ingestor.progress(table)
        error = counters.last_error
        return TableResource(
            identifier=table.identifier,
            source=managed.source,
            config=table,
            status=TableStatusBody(
                state=counters.state,
                partitions=[
                    PartitionStatus(
                        partition=p.partition,
                        committed_offset=p.committed_offset,
                        high_watermark=p.high_watermark,
                        lag=p.lag,
                    )
                    for p in progress.partitions
                ],
                lag=progress.lag,
                last_commit_at=progress.last_commit_at,
                last_snapshot_id=progress.last_snapshot_id,
                records_total=counters.records_total,
                bytes_total=counters.bytes_total,
                dlq_records_total=counters.dlq_records_total,
                skipped_records_total=counters.skipped_total,
                commits_total=counters.commits_total,
                errors_total=counters.errors_total,
                last_error=None
                if error is None
                else LastError(message=error.message, time=error.at, partition=error.partition, offset=error.offset),
            ),
        )

    @router.get("", dependencies=read, summary="List the tables with their live status")
    def list_tables() -> list[TableResource]:
        return [resource(managed) for managed in ingestor.tables()]

    @router.post(
        "",
        dependencies=admin,
        status_code=status.HTTP_201_CREATED,
        summary="Enable a topic: ingest it into a table",
    )
    def create_table(body: CreateTable, request: Request, response: Response) -> TableResource:
        managed = ingestor.create(
            body.table_settings(),
            create_topic=body.create_topic,
            partitions=body.partitions or 1,
            replication_factor=body.replication_factor or -1,
        )
        response.headers["Location"] = str(request.url_for("get_table", table=managed.settings.identifier))
        return resource(managed)

    @router.get("/{table}", dependencies=read, summary="A table's config and live status")
    def get_table(table: str) -> TableResource:
        return resource(ingestor.get(table))

    @router.patch("/{table}", dependencies=admin, summary="Change a table's mutable settings")
    def update_table(table: str, body: TablePatch) -> TableResource:
        return resource(ingestor.update(table, body.model_dump(exclude_unset=True)))

    @router.post("/{table}/pause", dependencies=admin, summary="Commit what is buffered and stop consuming")
    def pause_table(table: str) -> TableResource:
        return resource(ingestor.pause(table))

    @router.post("/{table}/resume", dependencies=admin, summary="Resume a paused or suspended table")
    def resume_table(table: str) -> TableResource:
        return resource(ingestor.resume(table))

    @router.delete(
        "/{table}",
        dependencies=admin,
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Stop ingesting a table; purge=true also drops the table, its DLQ table and their files",
    )
    def delete_table(
        table: str, purge: bool = Query(default=False, description="drop the Iceberg tables and delete their files")
    ) -> Response:
        ingestor.delete(table, purge=purge)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
