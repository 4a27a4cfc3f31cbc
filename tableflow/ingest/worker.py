"""One table's loop: consume a batch, decode it in bulk, buffer it, commit on a trigger.

Positions always come from the table (``tableflow.offsets``), never from the consumer group: on start, on every
assignment and after any failure the worker seeks to what the table holds. Before partitions are revoked the
buffer is committed; partitions that are lost (not revoked) are dropped without committing, because another
process may already own them. Any unexpected error restarts the consumer from the table's positions, so the
buffer is either committed whole or re-read whole.

Commits run on a commit thread, one at a time, while the loop reads on into the next buffer, which starts where
the one in flight ends: writing Parquet and the catalog round trip overlap with consuming and decoding. That
next buffer only holds once the commit lands; when the commit is fenced it is dropped with everything else for
those partitions and read again from the table. Revocation, pause, suspend and stop wait for the commit in
flight and then commit the rest in place, so nothing is handed over half-committed.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from pyiceberg.catalog import Catalog

from tableflow import offsets as om
from tableflow.config import Settings, TableSettings
from tableflow.errors import BrokerError, FencedError, IncompatibleSchemaError, TableflowError
from tableflow.ingest.buffer import Buffer
from tableflow.ingest.commit import DLQ_SCHEMA, CommitResult, Committer
from tableflow.ingest.decode import Decoded, Decoder, RecordError
from tableflow.ingest.decode.factory import make_decoder
from tableflow.ingest.decode.key import KeyDecoder
from tableflow.ingest.records import MessageBatch, before
from tableflow.ingest.status import ErrorInfo, TableStatus
from tableflow.schema.registry import SchemaSource

log = logging.getLogger(__name__)

_BATCH = 10_000
_POLL_S = 0.2
_MAX_BACKOFF_S = 30.0


class TableWorker:
    """Runs in its own thread; ``stop()`` commits what is buffered and closes the consumer."""

    def __init__(self, settings: Settings, table: TableSettings, catalog: Catalog, source: SchemaSource) -> None:
        self.kafka = settings.kafka
        self.table = table
        self.committer = Committer(catalog, table, raw=table.format == "raw")
        self.status = TableStatus(table.identifier, table.topic)
        self._source = source
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._resume_requested = threading.Event()
        self._thread = threading.Thread(target=self.run, name=f"tableflow-{table.identifier}", daemon=True)
        self._consumer: Consumer | None = None
        self._decoder: Decoder | None = None
        self._keys: KeyDecoder | None = None
        self._buffer = Buffer()
        self._suspended_at: ErrorInfo | None = None
        self._commits = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tableflow-commit-{table.identifier}")
        self._in_flight: tuple[Buffer, Future[CommitResult]] | None = None

    # -- control (any thread) -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to commit and exit without waiting, so several workers can wind down at once."""
        self._stop.set()

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        """Resume a paused table, or a suspended one from the record it stopped at."""
        self._paused.clear()
        self._resume_requested.set()

    # -- the loop ------------------------------------------------------------------------------------

    def run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._consume_until_stopped()
                break
            except Exception as exc:
                log.exception("table %s failed; restarting from the table's positions", self.table.identifier)
                self.status.state = "failed"
                self.status.errors_total += 1
                self.status.last_error = ErrorInfo(str(exc), datetime.now(UTC))
                self._close()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
        self._close()
        self._commits.shutdown()
        self.status.state = "stopped"

    def _consume_until_stopped(self) -> None:
        self._buffer = Buffer()
        consumer = Consumer(
            {
                # Fetch again soon after a full queue drains (librdkafka waits 1 s by default).
                "fetch.queue.backoff.ms": 10,
                **self.kafka.client_config(),
                "group.id": f"tableflow.{self.table.identifier}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "partition.assignment.strategy": "cooperative-sticky",
                "auto.offset.reset": "earliest",
            }
        )
        self._consumer = consumer
        table = self.committer.ensure_table(self._latest_positions(consumer) if self.table.start == "latest" else None)
        schema = table.schema().as_arrow()
        self._decoder = make_decoder(self.table, self._source, schema)
        self._keys = KeyDecoder(self.table.key_format, self._source, schema)
        self.committer.reset_view(table)
        self.status.committed = dict(self.committer.positions())
        consumer.subscribe(
            [self.table.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.status.state = "running"
        while not self._stop.is_set():
            self._apply_control(consumer)
            messages = consumer.consume(num_messages=_BATCH, timeout=_POLL_S)
            if messages:
                self._ingest(messages)
            if self._suspended_at is not None:
                self._flush()
                self._suspend(consumer, self._suspended_at)
            elif self._buffer.due(
                self.table.commit_interval_s, self.table.max_buffer_records, self.table.max_buffer_bytes
            ):
                self._submit()
            elif self._in_flight is not None and self._in_flight[1].done():
                self._collect()
        self._flush()

    def _suspend(self, consumer: Consumer, reason: ErrorInfo) -> None:
        """Stop before the bad record (everything before it is committed); ``resume()`` re-reads from it."""
        if self.status.state != "suspended":
            consumer.pause(consumer.assignment())
            self.status.state = "suspended"
            self.status.last_error = reason

    def _apply_control(self, consumer: Consumer) -> None:
        if self._paused.is_set() and self.status.state == "running":
            self._flush()
            consumer.pause(consumer.assignment())
            self.status.state = "paused"
        if self._resume_requested.is_set():
            self._resume_requested.clear()
            if self.status.state in ("paused", "suspended"):
                self._suspended_at = None
                self._reposition(consumer, consumer.assignment())
                consumer.resume(consumer.assignment())
                self.status.state = "running"

    def _latest_positions(self, consumer: Consumer) -> om.OffsetMap:
        """High watermarks of every partition: where a new ``start: latest`` table begins."""
        metadata = consumer.list_topics(self.table.topic, timeout=10)
        topic = metadata.topics.get(self.table.topic)
        if topic is None or topic.error is not None:
            return {}
        return {
            self.table.topic: {
                p: consumer.get_watermark_offsets(TopicPartition(self.table.topic, p), timeout=10)[1]
                for p in topic.partitions
            }
        }

    # -- rebalance callbacks (run inside consume()) ----------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        positions = self.committer.positions()
        for tp in partitions:
            base = positions.get(tp.partition)
            tp.offset = OFFSET_BEGINNING if base is None else base
            self._buffer.assign(tp.partition, base)
        log.info("%s assigned %s", self.table.identifier, {tp.partition: tp.offset for tp in partitions})
        consumer.incremental_assign(partitions)
        if self.status.state in ("paused", "suspended"):
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self._flush()
        except Exception:
            log.exception("%s: commit before revocation failed; the new owner re-reads", self.table.identifier)
        self._buffer.forget([tp.partition for tp in partitions])
        consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._buffer.forget([tp.partition for tp in partitions])
        consumer.incremental_unassign(partitions)

    def _reposition(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Forget what is buffered for ``partitions`` and read them again from the table's positions."""
        self._collect()
        if not partitions:
            return
        self._buffer.forget([tp.partition for tp in partitions])
        consumer.incremental_unassign(partitions)
        self._on_assign(consumer, [TopicPartition(tp.topic, tp.partition) for tp in partitions])

    # -- records -------------------------------------------------------------------------------------

    def _ingest(self, messages: list[Message]) -> None:
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                if message.partition() in self._buffer.ranges:
                    good.append(message)
            elif error.fatal():
                raise BrokerError(f"{self.table.topic}: {error.str()}")
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("%s: consumer error: %s", self.table.topic, error.str())
        if not good:
            return
        batch = MessageBatch.from_messages(self.table.topic, good)
        assert self._decoder is not None and self._keys is not None
        decoded = self._keys.attach(self._decoder.decode(batch.values), batch.keys)
        metadata = batch.metadata()
        rows = admitted_rows(self.committer, decoded, metadata)
        dead = None
        cut: dict[int, int] = {}
        if decoded.errors:
            dead, cut = self._on_errors(decoded, batch, metadata)
            if cut:
                rows = [_before(piece, cut) for piece in rows]
        next_offsets: dict[int, int] = {}
        for partition, offset in zip(batch.partitions, batch.offsets, strict=True):
            if partition not in cut or offset < cut[partition]:
                next_offsets[partition] = offset + 1
        next_offsets.update(cut)
        self._buffer.add(rows, dead, next_offsets, batch.value_bytes())

    def _on_errors(
        self, decoded: Decoded, batch: MessageBatch, metadata: pa.Table
    ) -> tuple[pa.Table | None, dict[int, int]]:
        """Apply the table's error policy; return dead-letter rows and, for ``suspend``, where to stop."""
        policy = self.table.on_error
        first = decoded.errors[0]
        log.warning(
            "%s: %d record(s) failed to decode (policy %s), first at %s[%d]@%d: %s",
            self.table.identifier, len(decoded.errors), policy, self.table.topic,
            batch.partitions[first.row], batch.offsets[first.row], first.error,
        )  # fmt: skip
        if policy == "skip":
            self.status.skipped_total += len(decoded.errors)
            return None, {}
        if policy == "suspend":
            cut: dict[int, int] = {}
            for error in decoded.errors:
                partition, offset = batch.partitions[error.row], batch.offsets[error.row]
                cut[partition] = min(offset, cut.get(partition, offset))
            partition, offset = min(cut.items(), key=lambda item: item[1])
            self._suspended_at = ErrorInfo(
                f"suspended before {self.table.topic}[{partition}]@{offset}: {first.error}",
                datetime.now(UTC),
                partition,
                offset,
            )
            return None, cut
        indices = [e.row for e in decoded.errors]
        now = datetime.now(UTC)
        dead = pa.Table.from_arrays(
            [
                *metadata.take(indices).columns,
                pa.array([batch.values[i] for i in indices], pa.binary()),
                pa.array([type(e.error).__name__ for e in decoded.errors], pa.string()),
                pa.array([str(e.error) for e in decoded.errors], pa.string()),
                pa.array([e.schema_id for e in decoded.errors], pa.int32()),
                pa.array([now] * len(indices), pa.timestamp("us", tz="UTC")),
            ],
            schema=DLQ_SCHEMA,
        )
        return dead, {}

    def _submit(self) -> None:
        """Hand the buffer to the commit thread and read on into its successor; one commit in flight at most."""
        self._collect()
        buffer = self._buffer
        if not buffer.advanced():
            buffer.started = None
            return
        self._buffer = buffer.successor()
        self._in_flight = (buffer, self._commits.submit(self.committer.commit, buffer))

    def _collect(self) -> None:
        """Wait for the commit in flight, if any, and act on its outcome."""
        if self._in_flight is None:
            return
        buffer, future = self._in_flight
        self._in_flight = None
        try:
            result = future.result()
        except FencedError as exc:
            log.warning("%s", exc)
            if self._consumer is not None:
                self._reposition(self._consumer, self._consumer.assignment())
            return
        self._committed(buffer, result)

    def _flush(self) -> None:
        """Commit everything read so far and wait for it."""
        self._submit()
        self._collect()

    def _committed(self, buffer: Buffer, result: CommitResult) -> None:
        self.status.records_total += result.rows
        self.status.bytes_total += buffer.bytes
        self.status.dlq_records_total += result.dead
        self.status.commits_total += 1
        self.status.committed.update(result.offsets)
        self.status.last_commit_at = datetime.now(UTC)
        self.status.last_commit_duration_s = result.duration_s
        self.status.commit_seconds.observe(result.duration_s)
        if result.snapshot_id is not None:
            self.status.last_snapshot_id = result.snapshot_id
        if self._consumer is not None:
            try:
                self._consumer.commit(
                    offsets=[TopicPartition(self.table.topic, p, o) for p, o in result.offsets.items()],
                    asynchronous=True,
                )
            except KafkaException as exc:  # monitoring only; positions live in the table
                log.debug("group offset commit failed: %s", exc)

    def _close(self) -> None:
        if self._in_flight is not None:  # let it land (or fail) before the next start reads the table's positions
            try:
                self._collect()
            except Exception:
                log.exception("%s: the commit in flight failed; its records are read again", self.table.identifier)
        if self._consumer is not None:
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError, TableflowError) as exc:
                log.warning("%s: closing the consumer: %s", self.table.identifier, exc)
            self._consumer = None
        for decoder in (self._decoder, self._keys):
            if decoder is not None:
                decoder.close()
        self._decoder = self._keys = None


def admitted_rows(committer: Committer, decoded: Decoded, metadata: pa.Table) -> list[pa.Table]:
    """``_rows`` the table can hold; the rows of a piece it cannot (schema/evolution.py) become errors in
    ``decoded``, which follow the error policy like records that do not decode."""
    kept = []
    for part, piece in zip(decoded.parts, _rows(decoded, metadata), strict=True):
        try:
            committer.admit(piece.schema)
        except IncompatibleSchemaError as exc:
            decoded.errors.extend(RecordError(row, exc, part.schema_id) for row in part.rows)
        else:
            kept.append(piece)
    if len(kept) < len(decoded.parts):
        decoded.errors.sort(key=lambda error: error.row)
    return kept


def _rows(decoded: Decoded, metadata: pa.Table) -> list[pa.Table]:
    """Decoded value columns beside their ``_kafka_*`` columns: one table per writer schema."""
    pieces = []
    for part in decoded.parts:
        meta = metadata.take(pa.array(part.rows, pa.int64()))
        columns = [*part.table.columns, *meta.columns]
        pieces.append(pa.Table.from_arrays(columns, schema=pa.schema([*part.table.schema, *meta.schema])))
    return pieces


def _before(table: pa.Table, cut: dict[int, int]) -> pa.Table:
    """Rows of ``table`` that lie before the cut offset of their partition."""
    return table.filter(before(table, cut, 2**62))
