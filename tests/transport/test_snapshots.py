"""Snapshots on subscribe and over HTTP, and server-side filters, on real sockets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from slurmcast.app import SlurmcastApp
from slurmcast.core.records import TERMINAL_JOB_STATES

from support.builders import job_data
from support.recorder import Recorder
from support.server import Client, http_json, running_server
from support.tokens import SECRET, admin, hs256
from support.waiting import eventually

QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}
FINAL = {s.value for s in TERMINAL_JOB_STATES}


#: Snapshots come from the broker's state: each test runs on both.
BROKERS = pytest.mark.parametrize("broker", ["memory", "redis"])


async def read_snapshot(client: Client) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    items: list[dict[str, Any]] = []
    while True:
        part = await client.recv()
        assert part["type"] == "snapshot", part
        items += part["data"]
        if part["part"] == part["parts"]:
            return part["position"], items


@BROKERS
async def test_snapshot_on_subscribe_shows_the_whole_cluster(broker: str) -> None:
    async with running_server(**QUIET, broker=broker) as app, Client.connect(app) as client:
        await eventually(lambda: _polled(app), bool)
        reply = await client.request({"type": "subscribe", "channel": "jobs", "snapshot": True})
        position, jobs = await read_snapshot(client)
        assert position == reply["position"]
        assert app.monitor.jobs is not None and app.monitor.nodes is not None
        listed = {j.job_id for j in app.monitor.jobs.jobs.values() if j.state.value not in FINAL}
        assert {job["job_id"] for job in jobs} == listed and listed
        await client.request({"type": "subscribe", "channel": "nodes", "snapshot": True})
        _, nodes = await read_snapshot(client)
        assert {n["node"] for n in nodes} == set(app.monitor.nodes.nodes)
        assert {"cpus", "memory", "gpus", "state"} <= set(nodes[0])


async def _polled(app: SlurmcastApp) -> bool:
    return app.monitor.jobs is not None and app.monitor.nodes is not None


@BROKERS
async def test_snapshot_over_http_with_a_filter(broker: str) -> None:
    async with running_server(**QUIET, broker=broker) as app:
        await eventually(lambda: _polled(app), bool)
        status, body = await http_json(app, "GET", "/snapshot/jobs")
        assert status == 200 and body["channel"] == "jobs" and body["data"]
        user = body["data"][0]["user"]
        status, mine = await http_json(app, "GET", f"/snapshot/jobs?user={user}")
        assert status == 200 and mine["data"]
        assert all(job["user"] == user for job in mine["data"])
        assert len(mine["data"]) < len(body["data"]) or {j["user"] for j in body["data"]} == {user}
        assert mine["position"] == body["position"]
        status, error = await http_json(app, "GET", "/snapshot/jobs?colour=red")
        assert status == 400 and error["code"] == "invalid_filter"
        status, error = await http_json(app, "GET", "/snapshot/notifications")
        assert status == 404 and error["code"] == "snapshot_not_available"
        status, _ = await http_json(app, "GET", "/snapshot/metrics")
        assert status == 200


@BROKERS
async def test_filters_apply_live_in_snapshots_and_in_recovery(broker: str) -> None:
    async with running_server(**QUIET, broker=broker) as app:
        await eventually(lambda: _polled(app), bool)
        async with Client.connect(app) as client:
            reply = await client.request(
                {
                    "type": "subscribe",
                    "channel": "jobs",
                    "snapshot": True,
                    "filter": {"partition": "gpu", "status": ["running"]},
                }
            )
            _, jobs = await read_snapshot(client)
            assert all(j["partition"] == "gpu" and j["status"] == "RUNNING" for j in jobs)
            now = datetime.now(UTC)
            for job_id, partition in (("1", "cpu"), ("2", "gpu")):
                data = job_data(job_id, user="a", partition=partition)
                await app.node.publish("jobs", "job_update", data, now, "a")
            live = await client.recv()
            assert live["data"]["job_id"] == "2"
            since = {"offset": reply["position"]["offset"], "epoch": reply["position"]["epoch"]}
        async with Client.connect(app) as client:
            reply = await client.request(
                {"type": "subscribe", "channel": "jobs", "since": since, "filter": {"job_id": "1"}}
            )
            assert reply["recovered"] is True
            replayed = await client.recv()
            assert replayed["data"]["job_id"] == "1"
            assert await client.request({"type": "ping"}) == {"type": "pong"}


async def test_invalid_filter_is_a_clear_error() -> None:
    async with running_server(**QUIET) as app, Client.connect(app) as client:
        reply = await client.request({"type": "subscribe", "channel": "jobs", "filter": {"gpu": 1}})
        assert (
            reply["code"] == "invalid_filter" and "cannot filter jobs on 'gpu'" in reply["message"]
        )
        reply = await client.request(
            {"type": "subscribe", "channel": "metrics", "filter": {"node": "a"}}
        )
        assert reply["code"] == "invalid_filter"


async def test_a_users_filter_narrows_but_never_widens() -> None:
    fast = {"auth": "jwt", "jwt_secret": SECRET, "sim_speed": 600.0, "jobs_interval": 0.05}
    async with (
        running_server(**fast) as app,
        Client.connect(app) as alice,
        Client.connect(app) as root,
    ):
        await alice.request({"type": "auth", "token": hs256("alice")})
        await root.request({"type": "auth", "token": admin()})
        # Alice asks for bob's jobs: she still gets only what she may see (none of bob's).
        await alice.request(
            {"type": "subscribe", "channel": "jobs", "filter": {"user": ["bob", "alice"]}}
        )
        await root.request({"type": "subscribe", "channel": "jobs", "filter": {"user": "bob"}})
        async with Recorder.on(alice) as alice_seen, Recorder.on(root) as root_seen:
            await root_seen.expect(lambda m: m.get("type") == "job_submitted")
            await alice_seen.expect(lambda m: m.get("type") == "job_submitted")
        assert {m["data"]["user"] for m in root_seen.messages} == {"bob"}
        assert {m["data"]["user"] for m in alice_seen.messages} == {"alice"}
        status, body = await http_json(
            app,
            "GET",
            "/snapshot/jobs?user=bob",
            headers={"Authorization": f"Bearer {hs256('alice')}"},
        )
        assert status == 200 and body["data"] == []
        status, _ = await http_json(app, "GET", "/snapshot/jobs")
        assert status == 401


@BROKERS
async def test_alerts_and_metrics_snapshots_follow_their_messages(broker: str) -> None:
    # Minimal alert and metrics payloads: what is under test is which messages a
    # snapshot keeps, not their fields (the specs check the monitors' own messages).
    async with (
        running_server(**QUIET, broker=broker) as app,
        Client.connect(app, check_schemas=False) as client,
    ):
        now = datetime.now(UTC)
        for alert_id, status in (("a", "firing"), ("b", "firing"), ("a", "resolved")):
            await app.node.publish("alerts", "alert", {"id": alert_id, "status": status}, now)
        for usage in (10.0, 20.0):
            await app.node.publish(
                "metrics", "metrics_update", {"cluster": {"cpu_usage": usage}}, now
            )
        reply = await client.request({"type": "subscribe", "channel": "alerts", "snapshot": True})
        position, alerts = await read_snapshot(client)
        assert [a["id"] for a in alerts] == ["b"] and position == reply["position"]
        await client.request({"type": "subscribe", "channel": "metrics", "snapshot": True})
        _, metrics = await read_snapshot(client)
        assert metrics == [{"cluster": {"cpu_usage": 20.0}}]
