"""``HttpError``: the failure every handler raises, answered as a JSON error."""

from __future__ import annotations

from slurmcast.errors import ErrorCode, SlurmcastError


class HttpError(SlurmcastError):
    """An error answered with ``status`` and ``{"code": wire_code, ...}``.

    ``code`` may be an ``ErrorCode`` or, for the few codes only the HTTP API
    uses, plain text (e.g. ``"unsupported_media_type"``).
    """

    def __init__(self, status: int, code: ErrorCode | str, message: str) -> None:
        super().__init__(message, code=code if isinstance(code, ErrorCode) else None)
        self.status = status
        self.wire_code = str(code)
