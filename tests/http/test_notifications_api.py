"""Persisted notifications over HTTP and WebSocket, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any, cast

from slurmcast.app import SlurmcastApp

from support.databases import Backend, set_raw_data, slow_lock_url, writes_refused
from support.recorder import Recorder
from support.server import Client, http_json, running_server
from support.tokens import SECRET, admin, hs256
from support.waiting import eventually

KEY = "k-0123456789abcdef"
ADMIN = {"X-API-Key": KEY}
QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}
FAST = {"sim_speed": 600.0, "jobs_interval": 0.05, "nodes_interval": 0.05}


def announcement(title: str, user: str | None = None) -> dict[str, Any]:
    body = {"type": "system", "title": title, "message": f"{title}!", "severity": "warning"}
    if user is not None:
        body["user"] = user
    return body


async def test_job_notifications_are_stored_as_they_are_sent(backend: Backend) -> None:
    async with (
        running_server(**FAST, database_url=backend.url) as app,
        Client.connect(app) as client,
    ):
        await client.subscribe("notifications")
        live = await client.wait_for(lambda m: m.get("type") == "notification")
        stored = await eventually(
            lambda: http_json(app, "GET", "/notifications?limit=500"),
            lambda r: any(n["id"] == live["data"]["id"] for n in r[1]["notifications"]),
        )
        (row,) = [n for n in stored[1]["notifications"] if n["id"] == live["data"]["id"]]
        assert row == {**live["data"], "read": False}
        assert app.health()["storage"]["available"] is True


async def test_create_page_mark_read_and_survive_a_restart(backend: Backend) -> None:
    async with running_server(**QUIET, database_url=backend.url, api_key=KEY) as app:
        ids = []
        for n in range(5):
            status, body = await http_json(
                app, "POST", "/notifications", announcement(f"t{n}", "alice"), headers=ADMIN
            )
            assert status == 201 and body["notification"]["user"] == "alice"
            ids.append(body["notification"]["id"])
        status, page = await http_json(app, "GET", "/notifications?user=alice&limit=2")
        assert status == 200 and [n["title"] for n in page["notifications"]] == ["t4", "t3"]
        status, rest = await http_json(
            app, "GET", f"/notifications?user=alice&limit=10&before={page['next_before']}"
        )
        assert [n["title"] for n in rest["notifications"]] == ["t2", "t1", "t0"]
        status, marked = await http_json(app, "POST", f"/notifications/{ids[0]}/read?user=alice")
        assert status == 200 and marked["ids"] == [ids[0]]
        _, unread = await http_json(app, "GET", "/notifications?user=alice&unread=true")
        assert ids[0] not in {n["id"] for n in unread["notifications"]}
        assert len(unread["notifications"]) == 4
        status, missing = await http_json(app, "POST", "/notifications/nope/read?user=alice")
        assert status == 404 and missing["code"] == "not_found"
        status, everything = await http_json(app, "POST", "/notifications/read-all?user=alice")
        assert everything["marked"] == 4
    # Nothing is lost across a restart.
    async with running_server(**QUIET, database_url=backend.url) as app:
        _, page = await http_json(app, "GET", "/notifications?user=alice&limit=10")
        assert {n["id"] for n in page["notifications"]} == set(ids)
        assert all(n["read"] for n in page["notifications"])


async def test_users_see_and_mark_only_their_own(backend: Backend) -> None:
    secure = {**QUIET, "auth": "jwt", "jwt_secret": SECRET, "database_url": backend.url}
    alice = {"Authorization": f"Bearer {hs256('alice')}"}
    async with running_server(**secure) as app, Client.connect(app) as live:
        await live.request({"type": "auth", "token": hs256("alice")})
        await live.subscribe("user:alice")
        root = {"Authorization": f"Bearer {admin()}"}
        _, for_bob = await http_json(
            app, "POST", "/notifications", announcement("b", "bob"), headers=root
        )
        _, for_alice = await http_json(
            app, "POST", "/notifications", announcement("a", "alice"), headers=root
        )
        _, for_all = await http_json(
            app, "POST", "/notifications", announcement("all"), headers=root
        )
        pushed = await live.recv()
        assert pushed["channel"] == "user:alice" and pushed["data"]["title"] == "a"
        _, page = await http_json(app, "GET", "/notifications", headers=alice)
        assert {n["title"] for n in page["notifications"]} == {"a", "all"}
        status, _ = await http_json(app, "GET", "/notifications?user=bob", headers=alice)
        assert status == 403
        bob_id = for_bob["notification"]["id"]
        status, _ = await http_json(app, "POST", f"/notifications/{bob_id}/read", headers=alice)
        assert status == 404
        status, _ = await http_json(app, "POST", "/notifications", announcement("x"), headers=alice)
        assert status == 403
        status, _ = await http_json(app, "GET", "/notifications")
        assert status == 401
        # Marking over the WebSocket: own ids only.
        reply = await live.request(
            {"type": "mark_read", "ids": [for_alice["notification"]["id"], bob_id], "id": 3}
        )
        assert reply == {"type": "marked_read", "ids": [for_alice["notification"]["id"]], "id": 3}
        assert for_all["notification"]["user"] is None


async def test_bad_requests_are_clear(backend: Backend) -> None:
    async with running_server(**QUIET, database_url=backend.url, api_key=KEY) as app:
        for body, words in [
            ({"title": "x"}, "'message'"),
            ({**announcement("x"), "type": "job_failed"}, "'type' must be one of"),
            ({**announcement("x"), "severity": "loud"}, "'severity' must be one of"),
            ({**announcement("x"), "user": "not a user"}, "'user'"),
        ]:
            status, reply = await http_json(app, "POST", "/notifications", body, headers=ADMIN)
            assert status == 400 and words in reply["message"], reply
        status, reply = await http_json(app, "GET", "/notifications?limit=0")
        assert status == 400
        status, reply = await http_json(app, "GET", "/notifications?before=garbage")
        assert status == 400 and reply["code"] == "invalid_field"


async def test_database_down_then_back(backend: Backend) -> None:
    down = backend.make_down()
    async with running_server(**FAST, database_url=down.url, api_key=KEY) as app:
        await eventually(lambda: _storage(app), lambda s: s["available"] is False)
        health = app.health()
        assert health["status"] == "degraded" and health["storage"]["error"]
        async with Client.connect(app) as client:
            reply = await client.request(
                {"type": "subscribe", "channel": "alerts", "snapshot": True}
            )
            assert reply["type"] == "subscribed"
            alerts = []
            while True:
                part = await client.recv()
                alerts += part["data"]
                if part["part"] == part["parts"]:
                    break
            assert any(a["id"] == "storage_unavailable" for a in alerts)
            # The live channels keep flowing meanwhile.
            await client.subscribe("jobs")
            await client.wait_for(lambda m: m.get("channel") == "jobs")
            status, error = await http_json(app, "GET", "/notifications")
            assert status == 503 and error["code"] == "storage_unavailable"
            async with Recorder.on(client) as seen:
                await down.bring_up()
                await seen.expect(
                    lambda m: (
                        m.get("type") == "alert"
                        and m["data"]["id"] == "storage_unavailable"
                        and m["data"]["status"] == "resolved"
                    ),
                    timeout=60,
                )
        # What was sent while the database was down is stored now.
        page = await eventually(
            lambda: http_json(app, "GET", "/notifications?limit=10"),
            lambda r: r[0] == 200 and r[1]["notifications"],
        )
        assert page[1]["notifications"]


async def _storage(app: SlurmcastApp) -> dict[str, Any]:
    return cast("dict[str, Any]", app.health()["storage"])


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


async def test_announcement_data_too_deep_or_too_large_is_refused(backend: Backend) -> None:
    async with running_server(**QUIET, database_url=backend.url, api_key=KEY) as app:
        for data, code in [
            (nested(300), "nesting_too_deep"),  # orjson reads 1024 levels, writes 254
            (nested(40), "nesting_too_deep"),
            ({"text": "x" * 70_000}, "field_too_large"),
        ]:
            # json, not orjson: the client must be able to send what the server refuses.
            raw = json.dumps({**announcement("t"), "data": data}).encode()
            status, reply = await http_json(app, "POST", "/notifications", raw=raw, headers=ADMIN)
            assert (status, reply["code"]) == (400, code), reply
        status, reply = await http_json(
            app, "POST", "/notifications", {**announcement("ok"), "data": nested(20)}, headers=ADMIN
        )
        assert status == 201 and reply["notification"]["data"] == nested(20)
        status, page = await http_json(app, "GET", "/notifications")
        assert status == 200 and [n["title"] for n in page["notifications"]] == ["ok"]


async def test_a_stored_row_that_cannot_be_sent_does_not_break_the_page(backend: Backend) -> None:
    deep = json.dumps(nested(300))  # written by hand, or by an older version
    async with running_server(**QUIET, database_url=backend.url, api_key=KEY) as app:
        ids = []
        for title in ("first", "poisoned", "last"):
            _, reply = await http_json(
                app, "POST", "/notifications", announcement(title, "alice"), headers=ADMIN
            )
            ids.append(reply["notification"]["id"])
        await set_raw_data(backend.url, {ids[1]: deep})
        status, page = await http_json(app, "GET", "/notifications?user=alice")
        assert status == 200, page
        assert [n["title"] for n in page["notifications"]] == ["last", "poisoned", "first"]
        assert page["notifications"][1]["data"] == {}
    # And still after a restart, for everyone.
    secure = {"auth": "jwt", "jwt_secret": SECRET, "database_url": backend.url}
    async with running_server(**QUIET, **secure) as app:
        for user in ("alice", "bob"):
            token = {"Authorization": f"Bearer {hs256(user)}"}
            status, page = await http_json(app, "GET", "/notifications", headers=token)
            assert status == 200, page
        status, page = await http_json(
            app, "GET", "/notifications?user=alice", headers={"Authorization": f"Bearer {admin()}"}
        )
        assert status == 200 and len(page["notifications"]) == 3


async def test_the_storage_alert_fires_once_while_reads_work_and_writes_fail(
    backend: Backend,
) -> None:
    url = slow_lock_url(backend.url)
    async with (
        running_server(**QUIET, database_url=url, api_key=KEY) as app,
        Client.connect(app) as client,
    ):
        status, _ = await http_json(app, "POST", "/notifications", announcement("a"), headers=ADMIN)
        assert status == 201
        await client.subscribe("alerts")
        async with Recorder.on(client) as seen, writes_refused(backend.url):
            for _ in range(3):
                status, reply = await http_json(
                    app, "POST", "/notifications", announcement("b"), headers=ADMIN
                )
                assert (status, reply["code"]) == (503, "storage_unavailable")
                status, page = await http_json(app, "GET", "/notifications")
                assert status == 200 and len(page["notifications"]) == 1
                assert app.health()["storage"]["available"] is False
        async with Recorder.on(client) as after:
            status, _ = await http_json(
                app, "POST", "/notifications", announcement("c"), headers=ADMIN
            )
            assert status == 201
            await after.expect(lambda m: storage_alert(m, "resolved"))
            # Whatever the server sent before its pong has arrived by then.
            await client.send({"type": "ping"})
            await after.expect(lambda m: m == {"type": "pong"})
        alerts = seen.matching(storage_alert) + after.matching(storage_alert)
        assert [a["data"]["status"] for a in alerts] == ["firing", "resolved"]


def storage_alert(message: dict[str, Any], status: str | None = None) -> bool:
    return (
        message.get("type") == "alert"
        and message["data"]["id"] == "storage_unavailable"
        and status in (None, message["data"]["status"])
    )
