"""Reconnection: dropped sockets lose and duplicate nothing; a restarted server means a resync.

Every test runs with each wire format: a msgpack client recovers exactly like a JSON one.
"""

from __future__ import annotations

import asyncio
import random
import socket
from datetime import UTC, datetime
from typing import TypedDict

import pytest

from slurmcast.app import SlurmcastApp
from slurmcast.client import ConnectionState, Position, SlurmcastClient, WireFormat
from slurmcast.client.wire import MSGPACK_SUBPROTOCOL

from support.server import WAIT, running_server


class Backoff(TypedDict):
    """Backoff keyword arguments of ``SlurmcastClient``."""

    backoff_initial: float
    backoff_max: float


QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}
FAST_BACKOFF: Backoff = {"backoff_initial": 0.02, "backoff_max": 0.2}
#: The subprotocol each wire format's connections must have, every one of them.
SUBPROTOCOL = {"json": None, "msgpack": MSGPACK_SUBPROTOCOL}


@pytest.fixture(params=["json", "msgpack"])
def wire_format(request: pytest.FixtureRequest) -> WireFormat:
    value: WireFormat = request.param
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def steady_stream(app: SlurmcastApp, total: int) -> None:
    for seq in range(total):
        await app.node.publish("jobs", "broadcast", {"seq": seq}, datetime.now(UTC))
        if seq % 20 == 0:
            await asyncio.sleep(0.001)  # pacing, so that drops land mid-stream


async def test_dropped_sockets_during_a_stream_lose_and_duplicate_nothing(
    wire_format: WireFormat,
) -> None:
    total = 1500
    async with running_server(**QUIET, history_size="jobs=5000") as app:
        connects = 0
        early_drops = 0
        client: SlurmcastClient

        connected = asyncio.Event()
        subprotocols: set[str | None] = set()

        def on_state(state: ConnectionState) -> None:
            nonlocal connects, early_drops
            if state is not ConnectionState.CONNECTED:
                connected.clear()
                return
            connects += 1
            # An assert here would be swallowed (the client logs what on_state raises).
            subprotocols.add(client._ws.subprotocol if client._ws is not None else "no socket")
            # Now and then drop the new connection at once: its subscribe reply
            # (and the replay behind it) is never read, so recovery starts over.
            if connects in (2, 4, 6) and client._ws is not None:
                early_drops += 1
                client._ws.transport.abort()
            else:
                connected.set()

        client = SlurmcastClient(
            f"ws://127.0.0.1:{app.ws.port}/",
            on_state=on_state,
            rng=random.Random(5),
            wire_format=wire_format,
            **FAST_BACKOFF,
        )
        async with client:
            sub = await client.subscribe("jobs")
            start = sub.position
            assert start is not None
            publisher = asyncio.create_task(steady_stream(app, total))
            seen: list[int] = []
            drops = 0
            try:
                async with asyncio.timeout(WAIT * 2):
                    async for message in sub:
                        seen.append(message["offset"])
                        if len(seen) == total:
                            break
                        if len(seen) % 125 != 0:
                            continue
                        await connected.wait()
                        ws = client._ws
                        if ws is not None:
                            drops += 1
                            connected.clear()  # set again by the next connection
                            if drops % 2:
                                await ws.close()  # a clean close the client did not ask for
                            else:
                                ws.transport.abort()  # a dead TCP connection
                    await publisher
                    await connected.wait()  # the last drop may come after the last message
            finally:
                publisher.cancel()
            assert seen == list(range(start.offset + 1, start.offset + total + 1))
            assert drops == total // 125 - 1 and early_drops == 3
            assert connects == 1 + drops + early_drops
            assert subprotocols == {SUBPROTOCOL[wire_format]}
            assert sub.resyncs == 0
            assert client.state is ConnectionState.CONNECTED


async def test_a_restarted_server_means_resync_then_a_fresh_snapshot_then_live_messages(
    wire_format: WireFormat,
) -> None:
    ws_port, http_port = free_port(), free_port()
    ports = {"ws_port": ws_port, "http_port": http_port}
    states: list[ConnectionState] = []
    client = SlurmcastClient(
        f"ws://127.0.0.1:{ws_port}/",
        on_state=states.append,
        rng=random.Random(1),
        wire_format=wire_format,
        **FAST_BACKOFF,
    )
    try:
        async with running_server(**QUIET, **ports) as first:
            await client.connect()
            sub = await client.subscribe("jobs", snapshot=True)
            messages = aiter(sub)
            async with asyncio.timeout(WAIT):
                snapshot = await anext(messages)
                assert snapshot["type"] == "snapshot"
                old = Position.from_dict(snapshot["position"])
                assert old is not None
                await first.node.publish("jobs", "broadcast", {"n": 1}, datetime.now(UTC))
                live = await anext(messages)
                assert live["data"] == {"n": 1} and live["offset"] == old.offset + 1
        # The server is gone: the client retries with backoff meanwhile.
        assert ConnectionState.DISCONNECTED in states[states.index(ConnectionState.CONNECTED) :]
        # A subscription made while disconnected is sent once a connection is open.
        later = asyncio.create_task(client.subscribe("alerts"))
        async with running_server(**QUIET, **ports) as second:
            async with asyncio.timeout(WAIT):
                resync = await anext(messages)
                assert resync["type"] == "resync" and resync["channel"] == "jobs"
                fresh = await anext(messages)
                assert fresh["type"] == "snapshot"
                new = Position.from_dict(fresh["position"])
                assert new is not None
                assert new.epoch != old.epoch and resync["position"] == fresh["position"]
                assert isinstance(fresh["data"], list)
                await second.node.publish("jobs", "broadcast", {"n": 2}, datetime.now(UTC))
                live = await anext(messages)
                assert live["data"] == {"n": 2} and live["offset"] == new.offset + 1
                alerts = await later
            assert sub.resyncs == 1 and sub.position == Position(new.offset + 1, new.epoch)
            assert alerts.position is not None and alerts.position.epoch != old.epoch
            assert client.state is ConnectionState.CONNECTED
            assert client._ws is not None
            assert client._ws.subprotocol == SUBPROTOCOL[wire_format]
    finally:
        await client.close()
