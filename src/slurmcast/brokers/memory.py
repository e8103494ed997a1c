"""The in-process broker: publications go straight to this instance's handler.

It exists so that one instance and many instances share one delivery path
(publish -> broker -> handler -> hub), as centrifuge's MemoryBroker does.
"""

from __future__ import annotations

from slurmcast.core.publication import Publication
from slurmcast.errors import PublishError
from slurmcast.ports import PublicationHandler


class MemoryBroker:
    kind = "memory"

    def __init__(self) -> None:
        self._handler: PublicationHandler | None = None

    async def start(self, handler: PublicationHandler) -> None:
        self._handler = handler

    async def publish(self, publication: Publication) -> int:
        if self._handler is None:
            raise PublishError("broker is not started")
        return self._handler.handle_publication(publication)

    async def close(self) -> None:
        self._handler = None
