"""``GET /openapi.json``: the OpenAPI 3.1 document of this API.

The document is ``slurmcast/specs/openapi.json``, read from the installed
package once (on the first request), with ``info.version`` set to this
server's version, and served as prepared bytes thereafter. Its first server
is ``/``: a client resolves the paths against wherever it fetched the document.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from aiohttp import web

from slurmcast import __version__
from slurmcast.specs import spec_file

#: The document's name inside ``slurmcast.specs``.
OPENAPI_FILE = "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document, with this server's version filled in (a fresh copy)."""
    document: dict[str, Any] = orjson.loads(spec_file(OPENAPI_FILE).read_bytes())
    document["info"]["version"] = __version__
    return document


@functools.cache
def _openapi_body() -> bytes:
    return orjson.dumps(openapi_document())


async def openapi(request: web.Request) -> web.Response:
    response = web.Response(body=_openapi_body(), content_type="application/json")
    response.headers["Cache-Control"] = "no-cache"
    return response
