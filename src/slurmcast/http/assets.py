"""``StaticAssets``: the dashboard's files, read once, answered from memory with an ETag.

Only the files found under the directory at start-up can be asked for, by their
exact relative path: there is no path on disk built from a request, so no
traversal to guard against. The files are small (the whole page is ~200 KB).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

#: Types the browser must not guess: an unknown suffix is served as bytes.
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain",
}
TEXT_TYPES = frozenset(t for t in CONTENT_TYPES.values() if t.startswith("text/")) | {
    "image/svg+xml",
    "application/json",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file; text files also gzipped once, at start-up, not per request."""

    body: bytes
    content_type: str
    etag: str
    gzipped: bytes | None = None

    @classmethod
    def of(cls, body: bytes, content_type: str) -> Asset:
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        gzipped = None
        if content_type in TEXT_TYPES:
            # mtime=0: the same bytes at every start, so caches along the way agree.
            gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        return cls(body, content_type, etag, gzipped)

    @property
    def gzip_etag(self) -> str:
        # Another representation, another validator (RFC 9110 8.8.3).
        return self.etag[:-1] + '-gz"'


class StaticAssets:
    def __init__(self, assets: dict[str, Asset]) -> None:
        self._assets = assets

    @classmethod
    def load(cls, directory: Path) -> StaticAssets:
        """Every regular file under ``directory`` (links followed), by its relative POSIX path."""
        assets: dict[str, Asset] = {}
        if directory.is_dir():
            for path in sorted(directory.rglob("*")):
                if not path.is_file() or path.name.startswith("."):
                    continue
                body = path.read_bytes()
                content_type = CONTENT_TYPES.get(path.suffix.lower()) or (
                    mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                )
                assets[path.relative_to(directory).as_posix()] = Asset.of(body, content_type)
        return cls(assets)

    def get(self, name: str) -> Asset | None:
        return self._assets.get(name)

    def __len__(self) -> int:
        return len(self._assets)
