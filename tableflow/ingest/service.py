"""The set of running table workers: started with the app, stopped (and flushed) with it."""

from __future__ import annotations

import logging

from pyiceberg.catalog import Catalog

from tableflow.config import Settings, TableSettings
from tableflow.ingest.status import TableStatus
from tableflow.ingest.worker import TableWorker
from tableflow.schema.registry import SchemaSource

log = logging.getLogger(__name__)


class Ingestor:
    def __init__(self, settings: Settings, catalog: Catalog, source: SchemaSource) -> None:
        self.settings = settings
        self.catalog = catalog
        self.source = source
        self.workers: dict[str, TableWorker] = {}

    def start(self) -> None:
        for table in self.settings.tables:
            self.add(table)

    def add(self, table: TableSettings) -> TableWorker:
        worker = TableWorker(self.settings, table, self.catalog, self.source)
        self.workers[table.identifier] = worker
        worker.start()
        log.info("ingesting topic %s into %s (%s)", table.topic, table.identifier, table.format)
        return worker

    def remove(self, identifier: str) -> None:
        self.workers.pop(identifier).stop()

    def statuses(self) -> list[TableStatus]:
        return [worker.status for worker in self.workers.values()]

    def stop(self) -> None:
        for worker in self.workers.values():
            worker._stop.set()
        for worker in self.workers.values():
            worker.stop()
