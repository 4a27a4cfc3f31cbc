"""``tableflow``: serve, demo, and ``tables`` against a running server's management API."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tableflow.client import DEFAULT_SERVER, TableflowClient
from tableflow.config import Settings, load_config
from tableflow.errors import TableflowError

_STATE_STYLES = {"running": "green", "paused": "yellow", "suspended": "red", "failed": "bold red", "starting": "cyan"}


def _serve(settings: Settings) -> None:
    import uvicorn

    from api.app import create_app

    uvicorn.run(create_app(settings), host=settings.server.host, port=settings.server.port, log_level="info")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tableflow", description="Kafka topics as Iceberg tables, exactly once.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service (ingestion, REST catalog, schema registry)")
    serve.add_argument("--config", type=Path, help="YAML settings file (TABLEFLOW_* variables override it)")
    demo = commands.add_parser("demo", help="embedded broker + live order events + the service, with live queries")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    demo.add_argument("--rate", type=int, default=200, help="order events per second (default 200)")
    demo.add_argument("--port", type=int, default=8181, help="HTTP port of the service (default 8181)")
    _add_tables_parser(commands)
    _add_dlq_parser(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "serve":
            _serve(load_config(args.config))
        elif args.command == "tables":
            _tables(args, Console())
        elif args.command == "dlq":
            _replay(args)
        else:
            from tableflow.demo import run_demo

            run_demo(duration_s=args.duration, rate=args.rate, port=args.port)
    except TableflowError as exc:
        print(f"tableflow: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def _add_tables_parser(commands: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=os.environ.get("TABLEFLOW_SERVER", DEFAULT_SERVER),
        help=f"the service's URL (default $TABLEFLOW_SERVER or {DEFAULT_SERVER})",
    )
    common.add_argument(
        "--token",
        default=os.environ.get("TABLEFLOW_TOKEN"),
        help="bearer token or client secret when auth is on (default $TABLEFLOW_TOKEN)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON instead of tables")
    tables = commands.add_parser("tables", help="list, show, create, pause, resume, delete tables on a server")
    actions = tables.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="every table with its state and lag")
    by_name = {
        "show": "one table's config and live status",
        "pause": "commit what is buffered and stop consuming",
        "resume": "resume a paused or suspended table",
        "delete": "stop ingesting a table created through the API",
    }
    for name, text in by_name.items():
        actions.add_parser(name, parents=[common], help=text).add_argument("table", help="e.g. kafka.orders")
    actions.choices["delete"].add_argument(
        "--purge", action="store_true", help="also drop the table, its DLQ table and their files"
    )
    create = actions.add_parser(
        "create", parents=[common], help="enable a topic (options left out take the server's defaults)"
    )
    create.add_argument("topic")
    create.add_argument("--table", help="Iceberg identifier namespace.name (default kafka.<topic>)")
    create.add_argument("--format", choices=["avro", "json", "raw"])
    create.add_argument("--key-format", choices=["binary", "string", "avro", "json"])
    create.add_argument("--partition-by", action="append", metavar="EXPR", help="e.g. 'day(_kafka_timestamp)'")
    create.add_argument("--commit-interval-s", type=float)
    create.add_argument("--max-buffer-records", type=int)
    create.add_argument("--max-buffer-bytes", type=int)
    create.add_argument("--start", choices=["earliest", "latest"])
    create.add_argument("--on-error", choices=["dlq", "skip", "suspend"])
    create.add_argument("--property", action="append", metavar="KEY=VALUE", type=_key_value, help="table property")
    create.add_argument("--create-topic", action="store_true", help="create the topic if it does not exist")
    create.add_argument("--partitions", type=int, help="partitions of a created topic")
    create.add_argument("--replication-factor", type=int, help="replicas of a created topic")


def _add_dlq_parser(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="dead-letter tables")
    actions = dlq.add_subparsers(dest="action", required=True)
    replay = actions.add_parser(
        "replay",
        help="re-ingest dead letters that decode now (e.g. their schema was registered late), exactly once; "
        "works on the catalog directly and may run beside the service",
    )
    replay.add_argument("--config", type=Path, help="YAML settings file (TABLEFLOW_* variables override it)")
    replay.add_argument("--table", required=True, help="e.g. kafka.orders")
    replay.add_argument("--dry-run", action="store_true", help="report what would be replayed, write nothing")


def _replay(args: argparse.Namespace) -> None:
    from tableflow.ingest.replay import ReplayResult, replay_configured

    def describe(result: ReplayResult) -> str:
        return (
            f"read {result.read:,}, {'would replay' if args.dry_run else 'replayed'} {result.replayed:,}, "
            f"already present {result.already_present:,}, still failing {result.still_failing:,}, "
            f"waiting {result.waiting:,}"
        )

    def progress(result: ReplayResult) -> None:
        print(f"tableflow: dlq replay {args.table}: {describe(result)}", file=sys.stderr, flush=True)

    result = replay_configured(load_config(args.config), args.table, dry_run=args.dry_run, progress=progress)
    print(f"dlq replay {args.table}{' (dry run)' if args.dry_run else ''}: {describe(result)}")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _create_body(args: argparse.Namespace) -> dict[str, Any]:
    """Only what was given, so the server's defaults (the same as the config file's) apply to the rest."""
    body: dict[str, Any] = {"topic": args.topic}
    for name in ("table", "format", "key_format", "partition_by", "commit_interval_s", "max_buffer_records",
                 "max_buffer_bytes", "start", "on_error", "partitions", "replication_factor"):  # fmt: skip
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.property:
        body["properties"] = dict(args.property)
    if args.create_topic:
        body["create_topic"] = True
    return body


def _tables(args: argparse.Namespace, console: Console) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would bury the output
    with TableflowClient(args.server, args.token) as client:
        data = _request(client, args)
    if args.json:
        console.print_json(data=data)
    elif args.action == "list":
        console.print(_list_view(data))
    elif args.action == "delete":
        console.print(f"deleted {args.table}" + (" and purged its tables and files" if args.purge else ""))
    else:
        _show(data, console)


def _request(client: TableflowClient, args: argparse.Namespace) -> Any:
    if args.action == "list":
        return client.list_tables()
    if args.action == "create":
        return client.create_table(_create_body(args))
    if args.action == "delete":
        client.delete_table(args.table, purge=args.purge)
        return {"identifier": args.table, "deleted": True, "purged": args.purge}
    calls = {"show": client.get_table, "pause": client.pause_table, "resume": client.resume_table}
    return calls[args.action](args.table)


def _state(status: dict[str, Any]) -> Text:
    state = str(status["state"])
    return Text(state, style=_STATE_STYLES.get(state, ""))


def _number(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _age(iso: str | None) -> str:
    """``2025-01-01T12:00:00Z`` as "12s ago": what an operator wants to know about the last commit."""
    if iso is None:
        return "never"
    seconds = max(0, int((datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _list_view(tables: list[dict[str, Any]]) -> Table:
    view = Table(title=f"{len(tables)} table(s)", title_justify="left")
    for column in ("table", "topic", "format", "source", "state", "lag", "records", "last commit"):
        numeric = column in ("lag", "records")
        view.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for item in tables:
        status, config = item["status"], item["config"]
        view.add_row(
            Text(item["identifier"]), Text(config["topic"]), config["format"], item["source"], _state(status),
            _number(status["lag"]), _number(status["records_total"]), _age(status["last_commit_at"]),
        )  # fmt: skip
    return view


def _show(item: dict[str, Any], console: Console) -> None:
    status, config = item["status"], item["config"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    facts.add_row("table", Text(f"{item['identifier']} (from the {item['source']})"))
    facts.add_row("state", _state(status))
    facts.add_row("lag", _number(status["lag"]))
    for key in ("records_total", "bytes_total", "dlq_records_total", "skipped_records_total", "commits_total",
                "errors_total"):  # fmt: skip
        facts.add_row(key, _number(status[key]))
    facts.add_row("last_commit_at", f"{status['last_commit_at']} ({_age(status['last_commit_at'])})")
    facts.add_row("last_snapshot_id", str(status["last_snapshot_id"]))
    if status["last_error"]:
        error = status["last_error"]
        facts.add_row("last_error", Text(f"{error['message']} (at {error['time']})", style="red"))
    for key, value in config.items():
        facts.add_row(key, Text("-" if value is None else str(value)))
    console.print(facts)
    if status["partitions"]:
        partitions = Table("partition", "committed offset", "high watermark", "lag")
        for p in status["partitions"]:
            partitions.add_row(
                str(p["partition"]), _number(p["committed_offset"]), _number(p["high_watermark"]), _number(p["lag"])
            )
        console.print(partitions)


if __name__ == "__main__":
    sys.exit(main())
