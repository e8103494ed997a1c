"""The ``slurmcast`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import MISSING

from slurmcast import __version__
from slurmcast.config import Settings, env_name, load_settings, settings_fields
from slurmcast.errors import ConfigError
from slurmcast.logs import configure_logging

#: Longest lifetime ``slurmcast token`` mints: ten years.
MAX_TOKEN_TTL = 3650 * 86400.0


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
    token = commands.add_parser(
        "token",
        help="mint an HS256 token for testing and scripting",
        description=(
            "Print a signed JWT. The secret, audience and issuer come from --jwt-secret, "
            "SLURMCAST_JWT_SECRET or the config file, as for serve."
        ),
    )
    token.add_argument("--sub", required=True, help="the Slurm user name the token is for")
    token.add_argument(
        "--role", action="append", default=[], help="a role, e.g. admin (repeatable)"
    )
    token.add_argument(
        "--channel",
        action="append",
        default=None,
        help="restrict the token to this channel (repeatable; default: no restriction)",
    )
    token.add_argument("--ttl", default="1h", help="lifetime: 3600, 90s, 30m, 12h or 7d")
    token.add_argument("--config", metavar="FILE", help="TOML config file")
    token.add_argument("--jwt-secret", dest="jwt_secret", default=None, help="HS256 secret")
    add_tail_parser(commands)
    add_notify_parser(commands)
    return parser


def add_notify_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from slurmcast.client import notify_cli

    notify_cli.add_notify_parser(commands)


def add_tail_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from slurmcast.client.tail import DEFAULT_URL
    from slurmcast.client.wire import WIRE_FORMATS

    tail = commands.add_parser(
        "tail",
        help="follow a channel and print each message on one line",
        description=(
            "Follow a channel and print each message on one line, readable or as JSON (--json), "
            "until Ctrl-C. Reconnects by itself and recovers what it missed; a connection that "
            "cannot be opened at all, or a refused token, exits with status 1."
        ),
    )
    tail.add_argument(
        "channel",
        metavar="CHANNEL",
        help="jobs, nodes, metrics, notifications, alerts, user:<name>, or all "
        "(messages for every client, which are also shown with any channel)",
    )
    tail.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="server-side filter, repeatable: --filter user=alice --filter status=RUNNING; "
        "the same field repeated accepts any of its values",
    )
    tail.add_argument(
        "--since",
        metavar="OFFSET[:EPOCH]",
        help="first replay the messages after this offset (default epoch: the channel's current)",
    )
    tail.add_argument(
        "--snapshot",
        action="store_true",
        help="print the channel's current state first (and again after a resync)",
    )
    tail.add_argument("--json", action="store_true", help="print each message as a JSON line")
    tail.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default {DEFAULT_URL})")
    tail.add_argument(
        "--token", default=None, help="a JWT for --auth jwt servers (default: $SLURMCAST_TOKEN)"
    )
    tail.add_argument(
        "--wire-format",
        choices=WIRE_FORMATS,
        default="json",
        help="ask the server for msgpack frames instead of JSON (the output is the same; "
        "a server that does not speak msgpack gets JSON)",
    )
    tail.add_argument(
        "--no-compression",
        dest="compression",
        action="store_false",
        help="do not offer permessage-deflate to the server",
    )


def run_tail(args: argparse.Namespace) -> int:
    from slurmcast.client.tail import TailOptions, check_options, parse_filters, parse_since, tail

    try:
        options = TailOptions(
            channel=args.channel,
            url=args.url,
            filter=parse_filters(args.filter),
            since=parse_since(args.since) if args.since is not None else None,
            snapshot=args.snapshot,
            json=args.json,
            token=args.token or os.environ.get("SLURMCAST_TOKEN") or None,
            wire_format=args.wire_format,
            compression=args.compression,
        )
        check_options(options)
    except ValueError as exc:
        print(f"slurmcast tail: {exc}", file=sys.stderr)
        return 2
    # The client's own warnings would repeat what tail says on stderr.
    logging.basicConfig(level=logging.ERROR, format="slurmcast tail: %(message)s", force=True)
    try:
        return asyncio.run(tail(options, sys.stdout, sys.stderr))
    except ValueError as exc:  # a bad URL
        print(f"slurmcast tail: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the handler was installed
        return 0


def parse_ttl(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d`` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    scale = units.get(text[-1:])
    number = text[:-1] if scale is not None else text
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise ConfigError(
            f"--ttl: expected a duration like 3600, 30m or 12h, got {text!r}"
        ) from None
    # nan passes every comparison and inf cannot become a time: both are refused here.
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"--ttl: must be a positive duration, got {text!r}")
    if seconds > MAX_TOKEN_TTL:
        raise ConfigError(f"--ttl: must be at most {MAX_TOKEN_TTL // 86400:.0f}d, got {text!r}")
    return seconds


def mint(args: argparse.Namespace) -> int:
    from slurmcast.auth.jwt import mint_token
    from slurmcast.core.channels import is_valid_user_name, parse_channel
    from slurmcast.errors import ProtocolError

    try:
        settings = load_settings({"jwt_secret": args.jwt_secret}, os.environ, args.config)
        ttl = parse_ttl(args.ttl)
        if not settings.jwt_secret:
            raise ConfigError("no HS256 secret: give --jwt-secret or set SLURMCAST_JWT_SECRET")
        if not is_valid_user_name(args.sub):
            raise ConfigError(f"--sub: {args.sub!r} is not a valid Slurm user name")
        channels = [parse_channel(c) for c in args.channel] if args.channel else None
        token = mint_token(
            settings.jwt_secret,
            args.sub,
            roles=args.role,
            ttl_s=ttl,
            now=time.time(),
            channels=channels,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    except ConfigError as exc:
        print(f"slurmcast: {exc.message}", file=sys.stderr)
        return 2
    except ProtocolError as exc:
        print(f"slurmcast: --channel: {exc.message}", file=sys.stderr)
        return 2
    print(token)
    return 0


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
        configure_logging(settings.log_level, settings.log_format)
        try:
            run_server(settings)
        except OSError as exc:
            logging.getLogger("slurmcast").error("cannot start: %s", exc)
            return 1
        except ConfigError as exc:
            logging.getLogger("slurmcast").error("configuration error: %s", exc.message)
            return 2
        return 0
    if args.command == "token":
        return mint(args)
    if args.command == "tail":
        return run_tail(args)
    if args.command == "notify":
        from slurmcast.client.notify_cli import run_notify

        return run_notify(args)
    return 2  # pragma: no cover - argparse enforces a known command
