"""``GET /metrics``: real actions on a real server move exactly the series they should."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from slurmcast.app import SlurmcastApp
from slurmcast.errors import ConfigError

from support import tokens
from support.fakeslurm import FakeSlurm
from support.metrics import Scrape, get_metrics, scrape
from support.server import WAIT, Client, http_json, running_server, server_settings
from support.waiting import eventually

#: No monitor traffic once started: the counters move only for what a test does.
QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}
FAST = {"jobs_interval": 0.05, "nodes_interval": 0.05, "metrics_interval": 0.05}
JWT = {"auth": "jwt", "jwt_secret": tokens.SECRET}


async def test_connections_and_subscriptions_move_the_gauges() -> None:
    async with running_server(**QUIET) as app:
        before = await scrape(app)
        assert before.get("slurmcast_ws_connections") == 0
        assert before.get("slurmcast_subscriptions", channel="alerts") == 0
        assert before.types["slurmcast_ws_connections_opened"] == "counter"
        async with Client.connect(app) as first, Client.connect(app) as second:
            await first.subscribe("alerts", "nodes")
            await second.subscribe("alerts")
            during = await scrape(app)
            assert during.get("slurmcast_ws_connections") == 2
            assert during.get("slurmcast_ws_open_sockets") == 2
            assert during.get("slurmcast_ws_connections_opened_total") == 2
            assert during.get("slurmcast_subscriptions", channel="alerts") == 2
            assert during.get("slurmcast_subscriptions", channel="nodes") == 1
            assert during.get("slurmcast_subscriptions", channel="jobs") == 0
            # Handshakes and subscription replies went out.
            assert during.get("slurmcast_ws_sent_bytes_total") > before.get(
                "slurmcast_ws_sent_bytes_total"
            )
        after = await eventually(
            lambda: scrape(app), lambda s: s.get("slurmcast_ws_connections") == 0
        )
        assert after.get("slurmcast_subscriptions", channel="alerts") == 0
        assert after.get("slurmcast_ws_connections_opened_total") == 2


async def test_a_broadcast_counts_once_published_and_once_per_recipient() -> None:
    async with running_server(**QUIET) as app:
        await app.stop_polling()  # nothing else is published meanwhile
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client.connect(app)) for _ in range(4)]
            for client in clients[:3]:
                await client.subscribe("alerts")
            before = await scrape(app)
            status, body = await http_json(
                app, "POST", "/broadcast", {"channel": "alerts", "message": {"note": "x"}}
            )
            assert (status, body["delivered"]) == (200, 3)
            for client in clients[:3]:
                await client.wait_for(lambda m: m.get("channel") == "alerts")
            status, body = await http_json(app, "POST", "/broadcast", {"message": {"n": 1}})
            assert (status, body["delivered"]) == (200, 4)
            after = await scrape(app)

        def moved(name: str, channel: str) -> float:
            return after.get(name, channel=channel) - before.get(name, channel=channel)

        assert moved("slurmcast_messages_published_total", "alerts") == 1
        assert moved("slurmcast_messages_received_total", "alerts") == 1
        assert moved("slurmcast_messages_delivered_total", "alerts") == 3
        assert moved("slurmcast_messages_published_total", "all") == 1
        assert moved("slurmcast_messages_delivered_total", "all") == 4
        for channel in ("jobs", "nodes", "metrics", "notifications", "user"):
            assert moved("slurmcast_messages_delivered_total", channel) == 0
        publishes = after.get("slurmcast_broker_publish_duration_seconds_count")
        assert publishes - before.get("slurmcast_broker_publish_duration_seconds_count") == 2
        assert after.get("slurmcast_broker_publish_duration_seconds_bucket", le="+Inf") == publishes
        assert after.get("slurmcast_broker_publish_failures_total") == 0
        assert after.get("slurmcast_broker_connected") == 1


async def test_rate_limited_requests_are_counted() -> None:
    async with running_server(**QUIET, rate_limit=1.0, rate_burst=1, flood_warnings=100) as app:
        async with Client.connect(app) as client:
            for request_id in range(5):
                await client.send({"type": "ping", "id": request_id})
            replies = [await client.recv() for _ in range(5)]
        refused = [r for r in replies if r.get("code") == "rate_limited"]
        assert len(refused) == 4, replies
        after = await scrape(app)
        assert after.get("slurmcast_ws_rate_limited_total") == 4
        assert after.get("slurmcast_ws_error_replies_total", code="rate_limited") == 4


async def test_refused_tokens_are_counted_by_stage_and_reason() -> None:
    async with running_server(**QUIET, **JWT) as app:
        uri = f"ws://127.0.0.1:{app.ws.port}/?token=not-a-jwt"
        with pytest.raises(InvalidStatus) as info:
            async with connect(uri):
                pass  # pragma: no cover
        assert info.value.response.status_code == 401
        async with Client.connect(app) as client:
            await client.send({"type": "auth", "token": tokens.hs256(ttl=-60)})
            assert (await client.recv())["code"] == "token_expired"
            with pytest.raises(ConnectionClosed):
                await client.recv()
        status, _ = await http_json(app, "GET", "/snapshot/jobs")
        assert status == 401
        after = await eventually(
            lambda: scrape(app),
            lambda s: (
                s.value("slurmcast_auth_failures_total", stage="ws_auth", reason="token_expired")
                == 1
            ),
        )
        assert (
            after.get("slurmcast_auth_failures_total", stage="ws_handshake", reason="invalid_token")
            == 1
        )
        assert after.get("slurmcast_auth_failures_total", stage="http", reason="unauthorized") == 1
        assert after.get("slurmcast_ws_server_closes_total", code="1008") == 1


async def test_connection_limit_refusals_are_counted_per_listener_and_limit() -> None:
    async with (
        running_server(**QUIET, max_connections_per_ip=1, http_max_connections_per_ip=2) as app,
        Client.connect(app),
    ):
        with pytest.raises(InvalidStatus) as info:
            async with Client.connect(app):
                pass  # pragma: no cover
        assert info.value.response.status_code == 429
        held = [await asyncio.open_connection("127.0.0.1", app.http.port) for _ in range(2)]
        try:
            await eventually(
                lambda: asyncio.sleep(0, app.http.connections.stats()),
                lambda s: s["connections"] == 2,
            )
            reader, writer = await asyncio.open_connection("127.0.0.1", app.http.port)
            async with asyncio.timeout(WAIT):
                answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 429")
        finally:
            for _, held_writer in held:
                held_writer.close()
        # The held connections' closes reach the server soon, not at once.
        await eventually(
            lambda: asyncio.sleep(0, app.http.connections.stats()),
            lambda s: s["connections"] == 0,
        )
        after = await scrape(app)
        refusals = "slurmcast_connection_refusals_total"
        assert after.get(refusals, listener="ws", limit="per_ip") == 1
        assert after.get(refusals, listener="ws", limit="total") == 0
        assert after.get(refusals, listener="ws", limit="per_user") == 0
        assert after.get(refusals, listener="http", limit="per_ip") == 1


async def test_metrics_can_be_kept_for_admins() -> None:
    async with running_server(**QUIET, **JWT, api_key="metrics-key", metrics_auth="api_key") as app:
        assert (await get_metrics(app))[0] == 401
        assert (await get_metrics(app, {"X-API-Key": "wrong"}))[0] == 401
        user = {"Authorization": f"Bearer {tokens.hs256('alice')}"}
        assert (await get_metrics(app, user))[0] == 403
        admin = {"Authorization": f"Bearer {tokens.admin()}"}
        assert (await get_metrics(app, admin))[0] == 200
        allowed = await scrape(app, {"X-API-Key": "metrics-key"})
        assert (
            allowed.get("slurmcast_auth_failures_total", stage="http", reason="unauthorized") == 2
        )
        assert allowed.get("slurmcast_auth_failures_total", stage="http", reason="forbidden") == 1


async def test_metrics_are_open_by_default_even_with_an_api_key() -> None:
    async with running_server(**QUIET, api_key="k") as app:
        assert (await get_metrics(app))[0] == 200


def test_protecting_metrics_needs_something_to_protect_them_with() -> None:
    with pytest.raises(ConfigError, match="metrics-auth"):
        SlurmcastApp(server_settings(metrics_auth="api_key"))


async def test_cluster_gauges_and_per_user_series_only_when_enabled() -> None:
    async with running_server(**QUIET) as app:
        default = await scrape(app)
        async with running_server(**QUIET, metrics_per_user=True) as other:
            per_user = await scrape(other)
    for result in (default, per_user):
        assert result.get("slurmcast_polling_leader") == 1
        nodes = sum(s.value for s in result.named("slurmcast_cluster_nodes"))
        assert nodes == 16  # the simulator's default cluster
        cpus = result.get("slurmcast_cluster_cpus")
        assert 0 < result.get("slurmcast_cluster_cpus_allocated") <= cpus
        assert result.get("slurmcast_cluster_memory_bytes") % (1024 * 1024) == 0
        assert result.named("slurmcast_cluster_jobs")
    assert default.named("slurmcast_cluster_user_jobs") == []
    users = per_user.named("slurmcast_cluster_user_jobs")
    assert users and all(set(s.labels) == {"user", "state"} for s in users)
    jobs = sum(s.value for s in per_user.named("slurmcast_cluster_jobs"))
    assert sum(s.value for s in users) == jobs


async def test_the_event_loop_lag_is_measured() -> None:
    async with running_server(**QUIET) as app:
        app.loop_lag.stop()
        app.loop_lag.interval = 0.05
        app.loop_lag.start()
        result = await eventually(
            lambda: scrape(app), lambda s: s.get("slurmcast_event_loop_lag_seconds_count") >= 3
        )
        assert result.types["slurmcast_event_loop_lag_seconds"] == "histogram"
        assert result.get("slurmcast_event_loop_lag_last_seconds") >= 0
        assert result.get("slurmcast_event_loop_lag_seconds_bucket", le="+Inf") >= 3


async def test_slurm_commands_and_polls_are_timed_and_their_failures_counted(
    tmp_path: Path,
) -> None:
    fake = FakeSlurm(tmp_path)
    async with running_server(
        source="slurm", slurm_bin_dir=str(fake.bin), slurm_format="delimited", **FAST
    ) as app:
        healthy = await eventually(
            lambda: scrape(app),
            lambda s: s.get("slurmcast_slurm_command_duration_seconds_count", command="sinfo") >= 2,
        )
        assert healthy.get("slurmcast_slurm_command_failures_total", command="sinfo") == 0
        assert healthy.get("slurmcast_slurm_command_duration_seconds_count", command="squeue") >= 2
        assert healthy.get("slurmcast_slurm_command_duration_seconds_sum", command="squeue") > 0
        assert (
            healthy.get("slurmcast_slurm_command_duration_seconds_count", command="scontrol") >= 1
        )
        assert healthy.get("slurmcast_poll_duration_seconds_count", loop="jobs") >= 1
        assert healthy.get("slurmcast_poll_failures_total", loop="nodes") == 0
        fake.fail(
            "sinfo", "sinfo: error: slurm_load_partitions: Unable to contact slurm controller"
        )
        failing = await eventually(
            lambda: scrape(app),
            lambda s: (
                s.get("slurmcast_slurm_command_failures_total", command="sinfo") >= 2
                and s.get("slurmcast_source_failing", loop="nodes") == 1
            ),
        )
        assert failing.get("slurmcast_poll_failures_total", loop="nodes") >= 1
        assert failing.get("slurmcast_slurm_command_failures_total", command="squeue") == 0
        assert failing.get("slurmcast_poll_failures_total", loop="jobs") == 0
        fake.heal("sinfo")
        await eventually(
            lambda: scrape(app), lambda s: s.get("slurmcast_source_failing", loop="nodes") == 0
        )


async def test_scrapes_do_not_mix_two_servers_in_one_process() -> None:
    async with (
        running_server(**QUIET) as first,
        running_server(**QUIET) as second,
        Client.connect(first),
    ):
        one: Scrape = await scrape(first)
        two: Scrape = await scrape(second)
    assert one.get("slurmcast_ws_connections") == 1
    assert two.get("slurmcast_ws_connections") == 0
    assert one.value("process_resident_memory_bytes") is not None
