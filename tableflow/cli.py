"""``tableflow``: serve, demo."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tableflow.config import Settings, load_config
from tableflow.errors import TableflowError


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
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "serve":
            _serve(load_config(args.config))
        else:
            from tableflow.demo import run_demo

            run_demo(duration_s=args.duration, rate=args.rate, port=args.port)
    except TableflowError as exc:
        print(f"tableflow: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
