"""Names of channel histories: a new one whenever a history is lost."""

from __future__ import annotations

import secrets


def new_epoch() -> str:
    """Eight random hex digits: a client holding an old epoch is told to resync."""
    return secrets.token_hex(4)
