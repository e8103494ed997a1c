"""The ``slurmcast`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import MISSING

from slurmcast import __version__
from slurmcast.config import Settings, env_name, load_settings, settings_fields
from slurmcast.errors import ConfigError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slurmcast",
        description="Real-time event gateway for Slurm clusters.",
    )
    parser.add_argument("--version", action="version", version=f"slurmcast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the WebSocket and HTTP servers",
        description=(
            "Run the servers. Every option can also be set with the environment "
            "variable shown, or as a key of the same name in the TOML file given by "
            "--config; precedence is flag > environment > file > default."
        ),
    )
    serve.add_argument(
        "--config", metavar="FILE", help=f"TOML config file (env {env_name('config')})"
    )
    for spec in settings_fields():
        meta = spec.metadata
        default = spec.default if spec.default is not MISSING else None
        choices = meta.get("choices")
        serve.add_argument(
            f"--{spec.name.replace('_', '-')}",
            dest=spec.name,
            default=None,
            metavar=("|".join(choices) if choices else spec.name.split("_")[-1].upper()),
            help=f"{meta['help']} (default {default}; env {env_name(spec.name)})",
        )
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


def run_server(settings: Settings) -> None:
    from slurmcast.app import serve_forever

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every POSIX system
        asyncio.run(serve_forever(settings))
    else:
        uvloop.run(serve_forever(settings))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        flags = {spec.name: getattr(args, spec.name) for spec in settings_fields()}
        try:
            settings = load_settings(flags, os.environ, args.config)
        except ConfigError as exc:
            print(f"slurmcast: configuration error: {exc.message}", file=sys.stderr)
            return 2
        configure_logging(settings.log_level)
        try:
            run_server(settings)
        except OSError as exc:
            logging.getLogger("slurmcast").error("cannot start: %s", exc)
            return 1
        except ConfigError as exc:
            logging.getLogger("slurmcast").error("configuration error: %s", exc.message)
            return 2
        return 0
    return 2  # pragma: no cover - argparse enforces a known command
