"""The `forge` command: `serve` runs the server; the other commands are a gRPC client of a running one."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .client_jobs import add_job_commands

__all__ = ["main"]

DEFAULT_ADDRESS = "localhost:50051"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forge", description="forge: an open LLM orchestration backend")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gRPC core (and the HTTP edge)", description="Run forge.")
    serve.add_argument("--config", type=Path, help="YAML config file (env FORGE_CONFIG); LiteLLM model_list accepted")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (env FORGE_GRPC_PORT, default 50051)")
    serve.add_argument("--http-port", type=int, help="HTTP edge port (env FORGE_HTTP_PORT, default 8000)")
    serve.add_argument("--no-http", action="store_true", help="serve gRPC only, no HTTP edge")
    serve.add_argument(
        "--core-address",
        default=os.environ.get("FORGE_CORE_ADDRESS"),
        help="run only the HTTP edge, calling a forge core at HOST:PORT over gRPC (env FORGE_CORE_ADDRESS)",
    )
    serve.add_argument("--data-dir", type=Path, help="data directory (env FORGE_DATA_DIR)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING… (env FORGE_LOG_LEVEL)")

    def client(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_, description=help_)
        c.add_argument(
            "--address",
            default=os.environ.get("FORGE_ADDRESS", DEFAULT_ADDRESS),
            help="forge gRPC address (env FORGE_ADDRESS)",
        )
        return c

    chat = client("chat", "stream a chat answer to the terminal")
    chat.add_argument("prompt", help="what to ask")
    chat.add_argument("-m", "--model", default="", help="model name (default: the server's default model)")
    chat.add_argument("-s", "--system", default="", help="system prompt")
    chat.add_argument("-t", "--temperature", type=float, help="sampling temperature")
    chat.add_argument("--max-tokens", type=int, help="upper bound on generated tokens")

    models = client("models", "list, pull or remove models")
    msub = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    lst = msub.add_parser("list", help="list models across providers")
    lst.add_argument("--provider", default="", help="only this provider's models")
    pull = msub.add_parser("pull", help="download a model into Ollama, with a progress bar")
    pull.add_argument("name")
    rm = msub.add_parser("rm", help="remove a local model")
    rm.add_argument("name")

    client("health", "show the server's health per service")
    add_job_commands(client("jobs", "create, list, watch, cancel, pause or resume fine-tuning jobs"))
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        _serve(args)
        return
    from .client_commands import run_client_command

    sys.exit(asyncio.run(run_client_command(args)))


def _serve(args: argparse.Namespace) -> None:
    # Must be set before litellm is imported anywhere, or it fetches its price map from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from .app import build, run_edge_only, run_until_signal
    from .config import ConfigError, load_config

    try:
        config = load_config(
            args.config,
            grpc_port=args.grpc_port,
            http_port=args.http_port,
            http_enabled=False if args.no_http else None,
            data_dir=args.data_dir,
        )
    except ConfigError as exc:
        sys.exit(f"forge: {exc}")
    logging.basicConfig(
        level=(args.log_level or config.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        if args.core_address:
            asyncio.run(run_edge_only(config, args.core_address))
        else:
            asyncio.run(run_until_signal(build(config)))
    except OSError as exc:
        sys.exit(f"forge: {exc}")
