"""Machine-readable specifications shipped with the package.

``openapi.json`` is the OpenAPI 3.1 document of the HTTP API, served at
``GET /openapi.json`` (``http.openapi``) with its version and servers filled in.
The WebSocket protocol's AsyncAPI document is ``docs/asyncapi.yaml`` in the repository.
Both are checked against every message the test suite sees (``tests/support/schemas.py``).
"""

from importlib.resources import files
from importlib.resources.abc import Traversable


def spec_file(name: str) -> Traversable:
    """A file of this package (``openapi.json``), read from the installed package."""
    return files(__name__) / name
