"""The in-process broker: history and state in memory, publications straight
to this instance's handler.

It exists so that one instance and many instances share one delivery path
(publish -> broker -> handler -> hub), as centrifuge's MemoryBroker does. Its
history lives and dies with the process: every channel gets a new epoch at
start-up, so clients reconnecting after a restart learn that they cannot
recover and resync from a snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from slurmcast.brokers.epoch import new_epoch
from slurmcast.core.history import ChannelHistory, HistoryResult
from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication
from slurmcast.core.views import SNAPSHOT_CHANNELS, ChannelState, Snapshot
from slurmcast.errors import PublishError
from slurmcast.ports import Batch, PublicationHandler, PublishResult


class MemoryBroker:
    kind = "memory"

    def __init__(
        self,
        history_size: Callable[[str], int] = lambda channel: 100,
        history_ttl: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        epoch: Callable[[], str] = new_epoch,
    ) -> None:
        self._history_size = history_size
        self._ttl = history_ttl
        self._clock = clock
        self._epoch = epoch
        self._channels: dict[str, ChannelHistory] = {}
        self._states: dict[str, ChannelState] = {}
        self._checkpoint: dict[str, bytes] = {}
        self._handler: PublicationHandler | None = None
        # The epoch of every channel not born yet, and the one its birth takes.
        # Shared safely: a channel here is never lost, only reseeded (new epoch).
        self._unborn: str | None = None

    async def start(self, handler: PublicationHandler) -> None:
        self._handler = handler

    async def publish(self, publication: Publication, *, confirm: bool = True) -> PublishResult:
        handler = self._started()
        positioned = self._append(publication)
        return PublishResult(positioned, handler.handle_publication(positioned))

    async def commit(self, batch: Batch) -> list[Publication]:
        handler = self._started()
        for channel, items in batch.seeds.items():
            # A state replaced without messages is a new history: a new epoch,
            # and subscribers resync from the new state.
            self._channels[channel] = ChannelHistory(
                self._epoch(), self._history_size(channel), self._ttl
            )
            self._state(channel).reset(dict(items))
            handler.handle_stream_lost(channel)
        self._checkpoint.update(batch.checkpoint)
        positioned = [self._append(publication) for publication in batch.publications]
        for publication in positioned:
            handler.handle_publication(publication)
        return positioned

    async def history(self, channel: str, *, since: int | None, limit: int) -> HistoryResult:
        stream = self._channels.get(channel)
        if stream is None:
            return HistoryResult([], self._unborn_position(), 1)
        if since is None:
            return stream.latest(limit, self._clock())
        return stream.since(since, limit, self._clock())

    async def position(self, channel: str) -> StreamPosition:
        stream = self._channels.get(channel)
        return stream.position if stream is not None else self._unborn_position()

    async def snapshot(self, channel: str) -> Snapshot | None:
        if channel not in SNAPSHOT_CHANNELS:
            return None
        state = self._states.get(channel)
        items = list(state.items.values()) if state is not None else []
        return Snapshot(channel, await self.position(channel), items)

    async def checkpoint(self) -> dict[str, bytes]:
        return dict(self._checkpoint)

    def track(self, channel: str, position: StreamPosition) -> None:
        """Nothing to check: delivery is a direct call, it cannot skip."""

    def untrack(self, channel: str) -> None:
        """Nothing was tracked."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "connected": True}

    async def close(self) -> None:
        self._handler = None

    def _started(self) -> PublicationHandler:
        if self._handler is None:
            raise PublishError("broker is not started")
        return self._handler

    def _append(self, publication: Publication) -> Publication:
        if publication.to_all_clients:
            return publication
        positioned = self._stream(publication.channel).append(publication, self._clock())
        if publication.state is not None:
            self._state(publication.channel).apply(publication.state)
        return positioned

    def _state(self, channel: str) -> ChannelState:
        state = self._states.get(channel)
        if state is None:
            state = self._states[channel] = ChannelState()
        return state

    def _stream(self, channel: str) -> ChannelHistory:
        """The channel's history, born now if this is its first publication."""
        stream = self._channels.get(channel)
        if stream is None:
            stream = ChannelHistory(
                self._unborn_position().epoch, self._history_size(channel), self._ttl
            )
            self._channels[channel] = stream
        return stream

    def _unborn_position(self) -> StreamPosition:
        if self._unborn is None:
            self._unborn = self._epoch()
        return StreamPosition(0, self._unborn)


def sizes_from(spec: Mapping[str, int], default: int) -> Callable[[str], int]:
    """A ``history_size`` function from per-channel sizes (``user`` = private channels)."""

    def size(channel: str) -> int:
        if channel.startswith("user:"):
            return spec.get("user", default)
        return spec.get(channel, default)

    return size
