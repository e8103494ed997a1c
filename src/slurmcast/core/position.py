"""Where a message sits in its channel's stream: an (offset, epoch) pair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slurmcast.errors import ErrorCode, ProtocolError

#: Longest epoch accepted from a client (ours are 8 hex characters).
MAX_EPOCH_LENGTH = 64
#: Highest offset accepted from a client: Redis's Lua numbers are doubles,
#: exact only up to 2**53, and no channel gets anywhere near it.
MAX_OFFSET = 2**53 - 1


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """``offset`` counts the channel's publications (1, 2, 3, ... with no gaps);
    ``epoch`` names the history they belong to and changes whenever that
    history is lost (a restart of in-memory history, a wiped Redis stream).
    Offset 0 means "before the first publication"."""

    offset: int
    epoch: str

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}

    @classmethod
    def parse(cls, value: Any, *, request_id: str | int | None = None) -> StreamPosition:
        """A position sent by a client: ``{"offset": 1040, "epoch": "a1b2"}``.

        Raises:
            ProtocolError: ``invalid_field`` naming what is wrong.
        """
        if not isinstance(value, dict):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                '\'since\' must be an object {"offset": <int>, "epoch": <string>}',
                request_id=request_id,
            )
        offset, epoch = value.get("offset"), value.get("epoch")
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                "'since.offset' must be an integer from 0 to 2**53 - 1",
                request_id=request_id,
            )
        if not isinstance(epoch, str) or not epoch or len(epoch) > MAX_EPOCH_LENGTH:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"'since.epoch' must be a string of 1 to {MAX_EPOCH_LENGTH} characters",
                request_id=request_id,
            )
        return cls(offset, epoch)
