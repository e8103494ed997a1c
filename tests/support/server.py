"""A real slurmcast server on free loopback ports, and a real WebSocket client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect

from slurmcast.app import SlurmcastApp
from slurmcast.config import Settings

from support.redis import REDIS_URL, shared_prefix
from support.schemas import check_http_response, check_server_message

#: Upper bound on any wait in a test: a guard against hanging, not a speed target.
WAIT = 30.0


def server_settings(**overrides: Any) -> Settings:
    """Settings for an in-process server: loopback, OS-chosen ports, quiet monitors."""
    values: dict[str, Any] = {"host": "127.0.0.1", "ws_port": 0, "http_port": 0}
    values.update(overrides)
    return dataclasses.replace(Settings(), **values)


@contextlib.asynccontextmanager
async def running_server(**overrides: Any) -> AsyncIterator[SlurmcastApp]:
    """A started server; its notifications database is SQLite in a fresh temporary directory.

    With ``broker="redis"`` and no ``redis_prefix``, it uses the shared test
    Redis under a fresh key prefix, deleted afterwards.
    """
    async with contextlib.AsyncExitStack() as stack:
        if overrides.get("broker") == "redis" and "redis_prefix" not in overrides:
            overrides.setdefault("redis_url", REDIS_URL)
            overrides["redis_prefix"] = await stack.enter_async_context(shared_prefix())
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="slurmcast-test-"))
        overrides.setdefault("data_dir", data_dir)
        app = SlurmcastApp(server_settings(**overrides))
        await app.start()
        try:
            yield app
        finally:
            await app.stop()


class Client:
    """A websockets client with JSON helpers that wait for messages, never sleep.

    Every message it receives is checked against docs/asyncapi.yaml
    (``support.schemas``): a message the spec does not describe fails the test.
    """

    def __init__(self, ws: ClientConnection, *, check_schemas: bool = True) -> None:
        self.ws = ws
        self.check_schemas = check_schemas

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, app_or_port: SlurmcastApp | int, *, check_schemas: bool = True, **kwargs: Any
    ) -> AsyncIterator[Client]:
        port = app_or_port if isinstance(app_or_port, int) else app_or_port.ws.port
        async with connect(f"ws://127.0.0.1:{port}/", **kwargs) as ws:
            yield cls(ws, check_schemas=check_schemas)

    async def send(self, message: Any) -> None:
        await self.ws.send(
            message if isinstance(message, str | bytes) else orjson.dumps(message).decode()
        )

    async def recv(self, timeout: float | None = WAIT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            raw = await self.ws.recv()
        value = orjson.loads(raw)
        assert isinstance(value, dict)
        if self.check_schemas:
            check_server_message(value)
        return value

    async def request(self, message: Any) -> dict[str, Any]:
        await self.send(message)
        return await self.recv()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT
    ) -> dict[str, Any]:
        """Read messages until one matches; fails after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if predicate(message):
                    return message

    async def subscribe(self, *channels: str) -> None:
        await self.send({"type": "subscribe", "channels": list(channels)})
        for _ in channels:
            reply = await self.recv()
            assert reply["type"] == "subscribed", reply


async def http_json(
    app: SlurmcastApp,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    check_schema: bool = True,
) -> tuple[int, dict[str, Any]]:
    """One request; the JSON answer is checked against the OpenAPI document
    (``support.schemas``) unless ``check_schema`` is false."""
    url = f"http://127.0.0.1:{app.http.port}{path}"
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    if data is not None and not any(k.lower() == "content-type" for k in headers or {}):
        # The API refuses a body that is not declared JSON (415).
        headers = {**(headers or {}), "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=data, headers=headers) as resp,
    ):
        status, body = resp.status, await resp.json(content_type=None)
    if check_schema:
        check_http_response(method, path, status, body)
    return status, body
