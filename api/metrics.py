"""``/metrics`` in the Prometheus text format.

A custom collector reads each worker's ``TableStatus`` and the table's ``Progress`` at scrape time, so the
numbers are the ones the management API shows and nothing is counted twice. Each app has its own registry
(several apps in one process, as in tests, never collide); process metrics (``process_*``) come along.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from api.auth import Authenticator
from tableflow.ingest.service import Ingestor
from tableflow.ingest.status import STATES


class TableflowCollector(Collector):
    """Every ``tableflow_*`` series, per table (and per partition for positions and lag)."""

    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor

    def collect(self) -> Iterator[Metric]:
        table, part = ["table"], ["table", "partition"]
        info = GaugeMetricFamily(
            "tableflow_table_info", "Tables being ingested (always 1)", labels=["table", "topic", "format", "source"]
        )
        state = GaugeMetricFamily("tableflow_table_state", "1 for the table's current state", labels=["table", "state"])
        records = CounterMetricFamily("tableflow_records", "Records committed to the table", labels=table)
        size = CounterMetricFamily("tableflow_bytes", "Kafka value bytes committed to the table", labels=table)
        commits = CounterMetricFamily("tableflow_commits", "Iceberg commits of ingested data", labels=table)
        dlq = CounterMetricFamily("tableflow_dlq_records", "Records written to the dead-letter table", labels=table)
        skipped = CounterMetricFamily("tableflow_skipped_records", "Undecodable records skipped", labels=table)
        errors = CounterMetricFamily("tableflow_errors", "Worker failures (each restarts from the table)", labels=table)
        duration = HistogramMetricFamily(
            "tableflow_commit_duration_seconds", "Duration of a table commit, dead letters included", labels=table
        )
        committed = GaugeMetricFamily("tableflow_committed_offset", "Next offset the table holds", labels=part)
        high = GaugeMetricFamily("tableflow_high_watermark", "End offset of the partition", labels=part)
        lag = GaugeMetricFamily("tableflow_lag_records", "Records in the partition not yet in the table", labels=part)
        last_commit = GaugeMetricFamily(
            "tableflow_last_commit_timestamp_seconds", "Time of the table's current snapshot", labels=table
        )
        freshness = GaugeMetricFamily(
            "tableflow_seconds_since_last_commit", "Age of the table's current snapshot", labels=table
        )
        now = time.time()
        for managed in self._ingestor.tables():
            settings, status = managed.settings, managed.worker.status
            identifier = settings.identifier
            info.add_metric([identifier, settings.topic, settings.format, managed.source], 1.0)
            for name in STATES:
                state.add_metric([identifier, name], 1.0 if status.state == name else 0.0)
            records.add_metric([identifier], status.records_total)
            size.add_metric([identifier], status.bytes_total)
            commits.add_metric([identifier], status.commits_total)
            dlq.add_metric([identifier], status.dlq_records_total)
            skipped.add_metric([identifier], status.skipped_total)
            errors.add_metric([identifier], status.errors_total)
            duration.add_metric(
                [identifier], buckets=status.commit_seconds.cumulative(), sum_value=status.commit_seconds.sum
            )
            progress = self._ingestor.progress(settings)
            for p in progress.partitions:
                labels = [identifier, str(p.partition)]
                if p.committed_offset is not None:
                    committed.add_metric(labels, p.committed_offset)
                if p.high_watermark is not None:
                    high.add_metric(labels, p.high_watermark)
                if p.lag is not None:
                    lag.add_metric(labels, p.lag)
            if progress.last_commit_at is not None:
                at = progress.last_commit_at.timestamp()
                last_commit.add_metric([identifier], at)
                freshness.add_metric([identifier], max(0.0, now - at))
        yield from (info, state, records, size, commits, dlq, skipped, errors, duration)
        yield from (committed, high, lag, last_commit, freshness)


def metrics_router(ingestor: Ingestor, auth: Authenticator) -> APIRouter:
    """``GET /metrics``; with auth enabled it needs the ``reader`` role (Prometheus: ``authorization.credentials``)."""
    registry = CollectorRegistry()
    registry.register(TableflowCollector(ingestor))
    ProcessCollector(registry=registry)
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", dependencies=[Depends(auth.require("reader"))], response_class=Response)
    def metrics() -> Response:
        """Prometheus text format: every ``tableflow_*`` series plus ``process_*``."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
