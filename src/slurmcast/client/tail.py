"""``slurmcast tail``: follow one channel, one line per message, across reconnections.

Messages go to stdout, as JSON lines (``--json``, for jq) or readable lines
(``formatting.py``); what happens to the connection goes to stderr. Exit
status: 0 after Ctrl-C or SIGTERM, 1 when the server cannot be reached at
first, refuses the token or the subscription, 2 for bad arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from slurmcast.client.connection import SlurmcastClient
from slurmcast.client.errors import AuthenticationFailed, ClientError, ConnectionFailed
from slurmcast.client.formatting import format_line
from slurmcast.client.state import ConnectionState
from slurmcast.client.stream import ALL_CHANNEL, Message, Position
from slurmcast.client.wire import WireFormat

DEFAULT_URL = "ws://127.0.0.1:5011/"
PREFIX = "slurmcast tail: "

FilterSpec = dict[str, str | list[str]]


@dataclass(frozen=True, slots=True)
class TailOptions:
    channel: str
    url: str = DEFAULT_URL
    filter: FilterSpec | None = None
    #: ``(offset, epoch)``; epoch None means the channel's current epoch.
    since: tuple[int, str | None] | None = None
    snapshot: bool = False
    json: bool = False
    token: str | None = None
    wire_format: WireFormat = "json"
    compression: bool = True


def parse_filters(items: Sequence[str]) -> FilterSpec | None:
    """``["user=alice", "status=RUNNING", "status=PENDING"]`` ->
    ``{"user": "alice", "status": ["RUNNING", "PENDING"]}``: one field given
    several times accepts any of its values.

    Raises:
        ValueError: an item is not ``FIELD=VALUE``.
    """
    wanted: dict[str, list[str]] = {}
    for item in items:
        field, sep, value = item.partition("=")
        field, value = field.strip(), value.strip()
        if not sep or not field or not value:
            raise ValueError(f"--filter: expected FIELD=VALUE, got {item!r}")
        values = wanted.setdefault(field, [])
        if value not in values:
            values.append(value)
    if not wanted:
        return None
    return {field: values[0] if len(values) == 1 else values for field, values in wanted.items()}


def parse_since(text: str) -> tuple[int, str | None]:
    """``1040`` or ``1040:a1b2c3d4``.

    Raises:
        ValueError: not a non-negative offset, optionally with an epoch.
    """
    offset, sep, epoch = text.partition(":")
    if not offset.strip().isdigit() or (sep and not epoch.strip()):
        raise ValueError(f"--since: expected OFFSET or OFFSET:EPOCH, got {text!r}")
    return int(offset), epoch.strip() or None


def check_options(options: TailOptions) -> None:
    """Raises ValueError for what the server would refuse anyway."""
    if options.channel == ALL_CHANNEL and (options.filter or options.since or options.snapshot):
        raise ValueError("the 'all' channel takes no --filter, --since or --snapshot")


async def tail(options: TailOptions, out: TextIO, err: TextIO) -> int:
    """Follow ``options.channel`` until Ctrl-C, SIGTERM, or a failure; returns the exit status.

    Raises:
        ValueError: a bad URL.
    """
    check_options(options)
    stop = asyncio.Event()
    follower = _Follower(options, out, err, stop)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    session = asyncio.create_task(follower.run())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({session, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        for task in (session, stopped):
            task.cancel()
        await asyncio.wait({session, stopped})
    if session.cancelled():
        return 0
    return session.result()


class _Follower:
    def __init__(self, options: TailOptions, out: TextIO, err: TextIO, stop: asyncio.Event):
        self.options = options
        self.out = out
        self.err = err
        self.stop = stop
        self.failed = asyncio.Event()
        self.lost = False
        self.client = SlurmcastClient(
            options.url,
            token=options.token,
            on_state=self.on_state,
            wire_format=options.wire_format,
            compression=options.compression,
        )

    def say(self, text: str) -> None:
        print(PREFIX + text, file=self.err, flush=True)

    def on_state(self, state: ConnectionState) -> None:
        if state is ConnectionState.FAILED:
            self.failed.set()
        elif state is ConnectionState.DISCONNECTED and self.client.subscriptions and not self.lost:
            self.lost = True
            self.say("connection lost; reconnecting")
        elif state is ConnectionState.CONNECTED and self.lost:
            self.lost = False
            self.say("reconnected")

    async def run(self) -> int:
        try:
            return await self._follow()
        except AuthenticationFailed as exc:
            self.say(f"authentication failed: {exc.code}: {exc.message}")
        except ConnectionFailed as exc:
            self.say(exc.message)
        except ClientError as exc:
            self.say(f"{exc.code}: {exc.message}")
        finally:
            await self.client.close()
        return 1

    async def _follow(self) -> int:
        options, client = self.options, self.client
        await client.connect()
        since = None
        if options.since is not None:
            offset, epoch = options.since
            if epoch is None:
                # The offset is in the channel's current history: ask which one that is.
                page = await client.history(options.channel, limit=1)
                epoch = page.position.epoch if page.position is not None else ""
            since = Position(offset, epoch)
        emit = _printer(options.json, self.out, self.stop)
        if options.channel != ALL_CHANNEL:
            await client.subscribe(ALL_CHANNEL, emit)
        sub = await client.subscribe(
            options.channel, emit, filter=options.filter, snapshot=options.snapshot, since=since
        )
        where = f" after {sub.position.offset}:{sub.position.epoch}" if sub.position else ""
        self.say(f"following {options.channel}{where}")
        await self.failed.wait()
        error = client.error
        if isinstance(error, AuthenticationFailed):
            raise error
        self.say(f"gave up: {error}")
        return 1


def _printer(as_json: bool, out: TextIO, stop: asyncio.Event) -> Callable[[Message], None]:
    def emit(message: Message) -> None:
        if stop.is_set():
            return
        line = _json_line(message) if as_json else _readable(message)
        try:
            out.write(line + "\n")
            out.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, and keep Python's
            # final flush of stdout from failing again at exit.
            stop.set()
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())

    return emit


def _json_line(message: Any) -> str:
    return orjson.dumps(message).decode()


def _readable(message: Message) -> str:
    try:
        return format_line(message)
    except Exception:  # a message shape the formatter does not know: show it whole
        return _json_line(message)
