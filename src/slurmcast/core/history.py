"""A channel's recent publications, and the recovery check against them.

``ChannelHistory`` is the in-memory stream of one channel: it assigns
offsets and keeps the last ``size`` publications (and, optionally, none older
than ``ttl`` seconds). ``recover`` is the pure check a subscriber's
reconnection goes through, whichever broker holds the history: it either
proves that the client can be brought up to date exactly (every offset after
its position, once, in order) or says it cannot. Never a partial replay.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from slurmcast.core.position import StreamPosition
from slurmcast.core.publication import Publication


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """Publications after a position, and the channel's position now.

    ``oldest`` is the lowest offset still stored (``top.offset + 1`` when the
    history is empty): a position older than ``oldest - 1`` cannot be
    recovered.
    """

    publications: Sequence[Publication]
    top: StreamPosition
    oldest: int


class ChannelHistory:
    """The in-memory stream of one channel.

    Args:
        epoch: names this history; a new ``ChannelHistory`` means new epoch.
        size: publications kept.
        ttl: seconds a publication is kept, or None for no age limit.
    """

    def __init__(self, epoch: str, size: int, ttl: float | None = None) -> None:
        self.epoch = epoch
        self.size = size
        self.ttl = ttl
        self.top = 0
        self._items: deque[tuple[float, Publication]] = deque()

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.top, self.epoch)

    def append(self, publication: Publication, now: float) -> Publication:
        """Assign the next offset; keep the publication; return it positioned."""
        self.top += 1
        positioned = publication.at(StreamPosition(self.top, self.epoch))
        if self.size > 0:
            self._items.append((now, positioned))
        self._trim(now)
        return positioned

    def since(self, offset: int | None, limit: int, now: float) -> HistoryResult:
        """Publications with an offset above ``offset`` (all kept ones for None).

        Returns at most ``limit`` of them, oldest first: the ones right after
        ``offset``, so a client can page forward.
        """
        self._trim(now)
        start = 0 if offset is None else offset
        selected = [p for _, p in self._items if p.offset > start]
        return HistoryResult(selected[:limit], self.position, self._oldest())

    def latest(self, limit: int, now: float) -> HistoryResult:
        """The last ``limit`` publications, oldest first."""
        self._trim(now)
        items = [p for _, p in self._items]
        return HistoryResult(items[-limit:] if limit else [], self.position, self._oldest())

    def _oldest(self) -> int:
        return self._items[0][1].offset if self._items else self.top + 1

    def _trim(self, now: float) -> None:
        while len(self._items) > self.size:
            self._items.popleft()
        if self.ttl is not None:
            while self._items and now - self._items[0][0] > self.ttl:
                self._items.popleft()


@dataclass(frozen=True, slots=True)
class Recovery:
    """The outcome of a recovery attempt.

    Attributes:
        recovered: True when ``publications`` are exactly every publication
            after the client's position up to ``position``, in order.
        position: where the client's stream continues from: after delivering
            ``publications``, the next live publication has offset
            ``position.offset + 1``.
        publications: what to deliver before going live (empty when not
            recovered: the client must resync from a snapshot).
    """

    recovered: bool
    position: StreamPosition
    publications: list[Publication]


def recover(
    since: StreamPosition, history: HistoryResult, buffered: Iterable[Publication]
) -> Recovery:
    """Bring a client from ``since`` up to date, or say that it cannot be done.

    Args:
        since: the last position the client saw.
        history: what the broker returned for ``since.offset``.
        buffered: live publications that arrived while history was read
            (they may overlap the history; duplicates are dropped).

    Returns:
        A ``Recovery``. It is recovered only if the epoch is unchanged, the
        position is not ahead of the channel, the history still holds the
        publication right after it, and history plus buffer run without a gap.
    """
    live = sorted(buffered, key=lambda p: p.offset)
    top = history.top
    merged: list[Publication] = list(history.publications)
    last = merged[-1].offset if merged else since.offset
    for publication in live:
        if publication.offset > last:
            merged.append(publication)
            last = publication.offset
    end = StreamPosition(max(top.offset, last), top.epoch)
    ok = (
        since.epoch == top.epoch
        and since.offset <= top.offset
        and since.offset >= history.oldest - 1
        # Everything up to the channel's position when history was read...
        and last >= top.offset
        # ...with no gap: exactly the offsets after since, once each, in order.
        and all(p.offset == since.offset + i + 1 for i, p in enumerate(merged))
    )
    if not ok:
        # Not recoverable: continue from now; the buffered publications that
        # are newer than the reported position still belong to the stream.
        return Recovery(False, top, [p for p in live if p.offset > top.offset])
    return Recovery(True, end, merged)
