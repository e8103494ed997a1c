"""The notification rules and deliveries API (/notify), over real sockets, on SQLite and
PostgreSQL.

Every answer is checked against the OpenAPI document by ``http_json``. The users here
(ivan, judy) have no jobs on the simulated cluster, so the rule planner running beside the
API never adds deliveries of theirs.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from slurmcast.app import SlurmcastApp
from slurmcast.core.notifications import Notification, NotificationType, Severity
from slurmcast.core.notify.rules import DestinationKind
from slurmcast.core.notify.ssrf import UrlPolicy
from slurmcast.http.openapi import openapi_document
from slurmcast.sinks.base import Secret
from slurmcast.sinks.config import SinksConfig
from slurmcast.sinks.email import SmtpSettings, TlsMode
from slurmcast.sinks.posting import HttpSinkSettings
from slurmcast.storage import default_url
from slurmcast.storage.outbox import NewDelivery

from support.databases import Backend
from support.server import http_json, running_server
from support.tokens import SECRET, admin, hs256
from support.waiting import eventually

KEY = "k-0123456789abcdef"
BY_KEY = {"X-API-Key": KEY}
QUIET = {"jobs_interval": 3600.0, "nodes_interval": 3600.0, "metrics_interval": 3600.0}
SINKS = SinksConfig(
    email=SmtpSettings(
        host="127.0.0.1", port=2525, tls=TlsMode.NONE, from_address="slurmcast@example.edu"
    ),
    address_template="{user}@example.edu",
    slack=True,
    slack_default_url="https://hooks.example.com/x",
    webhook_secret=Secret("s" * 32),
    webhook_default_url=None,
    # The worker looks at the outbox only when told to: a retried delivery being claimed at
    # once shows that the API told it.
    poll_interval=3600.0,
)
#: Well under the planner's own reread of the rules (every 30 s): a change it sees this soon
#: was announced to it by the API (``rules_changed``).
PLANNER_WAIT = 10.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


IVAN = bearer(hs256("ivan"))
JUDY = bearer(hs256("judy"))
ROOT = bearer(admin("root"))


def secure(**overrides: Any) -> dict[str, Any]:
    """JWT auth, an API key, and every kind of destination."""
    return {
        **QUIET,
        "auth": "jwt",
        "jwt_secret": SECRET,
        "api_key": KEY,
        "sinks": SINKS,
        **overrides,
    }


def rule(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "events": ["job_failed"],
        "destination": {"kind": "email", "target": "default"},
    }
    body.update(fields)
    return body


# -- /notify/config ------------------------------------------------------------------


async def test_config_for_a_user_an_admin_the_api_key_and_an_open_server() -> None:
    job_events = [
        "job_started",
        "job_completed",
        "job_failed",
        "job_timeout",
        "job_out_of_memory",
        "job_cancelled",
        "job_pending_long",
    ]
    everything = [*job_events, "alert_firing", "alert_resolved"]
    async with running_server(**secure()) as app:
        status, mine = await http_json(app, "GET", "/notify/config", headers=IVAN)
        assert status == 200
        assert mine == {
            "success": True,
            "kinds": ["email", "slack", "webhook"],
            "defaults": {"email": True, "slack": True, "webhook": False},
            "events": job_events,
            "email": "ivan@example.edu",
            "admin": False,
        }
        claimed = bearer(hs256("ivan", email="ivan.p@lab.example.org"))
        _, with_claim = await http_json(app, "GET", "/notify/config", headers=claimed)
        assert with_claim["email"] == "ivan.p@lab.example.org"
        _, root = await http_json(app, "GET", "/notify/config", headers=ROOT)
        assert (root["events"], root["admin"], root["email"]) == (
            everything,
            True,
            "root@example.edu",
        )
        _, by_key = await http_json(app, "GET", "/notify/config", headers=BY_KEY)
        assert (by_key["admin"], by_key["email"]) == (True, None)
        status, refused = await http_json(app, "GET", "/notify/config")
        assert (status, refused["code"]) == (401, "unauthorized")
    slack_only = SinksConfig(slack=True)
    async with running_server(**QUIET, sinks=slack_only) as app:
        _, open_server = await http_json(app, "GET", "/notify/config")
        assert open_server == {
            "success": True,
            "kinds": ["slack"],
            "defaults": {"email": False, "slack": False, "webhook": False},
            "events": everything,
            "email": None,
            "admin": True,
        }


async def test_without_sinks_there_is_no_notify_api() -> None:
    async with running_server(**QUIET) as app:
        for path in ("/notify/config", "/notify/rules", "/notify/deliveries"):
            status, body = await http_json(app, "GET", path)
            assert (status, body["code"]) == (404, "not_found"), path


# -- rules ---------------------------------------------------------------------------


async def test_rule_round_trip_reaches_the_planner(backend: Backend) -> None:
    async with running_server(**secure(database_url=backend.url)) as app:
        status, created = await http_json(
            app,
            "POST",
            "/notify/rules",
            rule(
                events=["job_timeout", "job_failed"],
                partitions=["gpu", "batch"],
                name_pattern="train_*",
                min_run_seconds=600,
            ),
            headers=IVAN,
        )
        assert status == 201, created
        made = created["rule"]
        assert made["id"].startswith("rule-")
        assert {k: v for k, v in made.items() if k not in ("id", "created_at", "updated_at")} == {
            "owner": "ivan",
            "enabled": True,
            "events": ["job_failed", "job_timeout"],
            "partitions": ["batch", "gpu"],
            "name_pattern": "train_*",
            "min_run_seconds": 600,
            "pending_minutes": None,
            "destination": {"kind": "email", "target": "default"},
        }
        assert made["created_at"] == made["updated_at"]
        path = f"/notify/rules/{made['id']}"
        await _planner_holds(app, made["id"], True)

        status, listed = await http_json(app, "GET", "/notify/rules", headers=IVAN)
        assert (status, listed["rules"]) == (200, [made])
        status, got = await http_json(app, "GET", path, headers=IVAN)
        assert (status, got["rule"]) == (200, made)

        replacement = rule(
            id="ignored-the-path-wins",
            events=["job_pending_long"],
            pending_minutes=30,
            destination={"kind": "slack", "target": "default"},
            enabled=False,
        )
        status, replaced = await http_json(app, "PUT", path, replacement, headers=IVAN)
        assert status == 200, replaced
        new = replaced["rule"]
        assert new["id"] == made["id"] and new["created_at"] == made["created_at"]
        assert new["updated_at"] >= made["updated_at"]
        assert (new["events"], new["pending_minutes"], new["partitions"], new["enabled"]) == (
            ["job_pending_long"],
            30,
            [],
            False,
        )
        assert new["destination"] == {"kind": "slack", "target": "default"}
        await _planner_holds(app, made["id"], False)  # disabled: not planned with

        status, patched = await http_json(app, "PATCH", path, {"enabled": True}, headers=IVAN)
        assert (status, patched["rule"]["enabled"]) == (200, True)
        assert patched["rule"]["events"] == ["job_pending_long"]
        await _planner_holds(app, made["id"], True)

        status, deleted = await http_json(app, "DELETE", path, headers=IVAN)
        assert (status, deleted) == (200, {"success": True, "deleted": made["id"]})
        await _planner_holds(app, made["id"], False)
        for method in ("GET", "DELETE"):
            status, gone = await http_json(app, method, path, headers=IVAN)
            assert (status, gone["code"]) == (404, "not_found")
        status, gone = await http_json(app, "PATCH", path, {"enabled": False}, headers=IVAN)
        assert status == 404
        status, gone = await http_json(app, "PUT", path, rule(), headers=IVAN)
        assert status == 404
        _, listed = await http_json(app, "GET", "/notify/rules", headers=IVAN)
        assert listed["rules"] == []


async def test_rules_survive_a_restart(backend: Backend) -> None:
    settings = secure(database_url=backend.url)
    async with running_server(**settings) as app:
        _, created = await http_json(app, "POST", "/notify/rules", rule(id="kept"), headers=IVAN)
    async with running_server(**settings) as app:
        status, got = await http_json(app, "GET", "/notify/rules/kept", headers=IVAN)
        assert (status, got["rule"]) == (200, created["rule"])
        await _planner_holds(app, "kept", True)


async def _planner_holds(app: SlurmcastApp, rule_id: str, held: bool) -> None:
    """Wait until the rule planner does (or does not) use ``rule_id``.

    The planner rereads the rules by itself only every 30 s: seeing a change well within
    ``PLANNER_WAIT`` means the API told it (``rules_changed``).
    """
    planner = app.planner
    assert planner is not None

    async def holds() -> bool:
        return any(r.id == rule_id for r in planner.rules)

    await eventually(holds, lambda found: found == held, timeout=PLANNER_WAIT)


async def test_a_user_cannot_see_or_change_anothers_rules() -> None:
    async with running_server(**secure()) as app:
        _, judys = await http_json(app, "POST", "/notify/rules", rule(id="judys"), headers=JUDY)
        original = judys["rule"]
        path = "/notify/rules/judys"
        for method, body in [
            ("GET", None),
            ("PUT", rule()),
            ("PATCH", {"enabled": False}),
            ("DELETE", None),
        ]:
            status, reply = await http_json(app, method, path, body, headers=IVAN)
            assert (status, reply["code"]) == (404, "not_found"), method
        _, listed = await http_json(app, "GET", "/notify/rules", headers=IVAN)
        assert listed["rules"] == []
        status, reply = await http_json(app, "GET", "/notify/rules?owner=judy", headers=IVAN)
        assert (status, reply["code"]) == (403, "forbidden")
        status, _ = await http_json(app, "GET", "/notify/rules?owner=ivan", headers=IVAN)
        assert status == 200
        for body, words in [
            (rule(owner="judy"), "your own"),
            (rule(destination={"kind": "email", "target": "judy@example.edu"}), "own address"),
            (rule(events=["alert_firing"]), "admins"),
        ]:
            status, reply = await http_json(app, "POST", "/notify/rules", body, headers=IVAN)
            assert (status, reply["code"]) == (403, "forbidden"), body
            assert words in reply["message"]
        # Their own address, written out, is theirs to use.
        own = rule(destination={"kind": "email", "target": "ivan@example.edu"})
        status, _ = await http_json(app, "POST", "/notify/rules", own, headers=IVAN)
        assert status == 201
        _, still = await http_json(app, "GET", path, headers=JUDY)
        assert still["rule"] == original


async def test_an_admin_may_do_it_all(backend: Backend) -> None:
    async with running_server(**secure(database_url=backend.url)) as app:
        _, ivans = await http_json(app, "POST", "/notify/rules", rule(id="ivans"), headers=IVAN)
        team = rule(
            id="oncall",
            owner="judy",
            events=["alert_firing", "job_failed"],
            destination={"kind": "email", "target": "oncall@lists.example.org"},
        )
        status, judys = await http_json(app, "POST", "/notify/rules", team, headers=ROOT)
        assert status == 201, judys
        assert judys["rule"]["owner"] == "judy"
        assert judys["rule"]["destination"]["target"] == "oncall@lists.example.org"
        status, roots = await http_json(app, "POST", "/notify/rules", rule(), headers=ROOT)
        assert (status, roots["rule"]["owner"]) == (201, "root")

        for headers in (ROOT, BY_KEY):
            _, everyone = await http_json(app, "GET", "/notify/rules", headers=headers)
            assert [r["owner"] for r in everyone["rules"]] == ["ivan", "judy", "root"]
            _, one = await http_json(app, "GET", "/notify/rules?owner=judy", headers=headers)
            assert [r["id"] for r in one["rules"]] == ["oncall"]
        # Judy sees the rule made for her, alerts and all.
        _, hers = await http_json(app, "GET", "/notify/rules", headers=JUDY)
        assert [r["id"] for r in hers["rules"]] == ["oncall"]

        status, changed = await http_json(
            app, "PUT", "/notify/rules/ivans", rule(events=["job_completed"]), headers=BY_KEY
        )
        assert (status, changed["rule"]["owner"], changed["rule"]["events"]) == (
            200,
            "ivan",
            ["job_completed"],
        )
        status, moved = await http_json(
            app, "PUT", "/notify/rules/ivans", rule(owner="judy"), headers=ROOT
        )
        assert (status, moved["code"]) == (400, "invalid_field")
        assert "cannot be changed" in moved["message"]
        status, _ = await http_json(
            app,
            "PUT",
            "/notify/rules/ivans",
            rule(owner="ivan", events=["job_completed"]),
            headers=ROOT,
        )
        assert status == 200
        status, _ = await http_json(
            app, "PATCH", "/notify/rules/ivans", {"enabled": False}, headers=ROOT
        )
        assert status == 200
        _, seen = await http_json(app, "GET", "/notify/rules/ivans", headers=IVAN)
        assert seen["rule"]["enabled"] is False and seen["rule"]["events"] == ["job_completed"]
        status, _ = await http_json(app, "DELETE", "/notify/rules/ivans", headers=BY_KEY)
        assert status == 200
        assert ivans["rule"]["id"] == "ivans"

        # The API key is no one: it must say whose rule it makes.
        status, reply = await http_json(app, "POST", "/notify/rules", rule(), headers=BY_KEY)
        assert (status, reply["code"]) == (400, "invalid_field")
        assert "'owner' is required" in reply["message"]
        status, made = await http_json(
            app, "POST", "/notify/rules", rule(owner="ivan"), headers=BY_KEY
        )
        assert (status, made["rule"]["owner"]) == (201, "ivan")
        # A user's token from someone without the admin role does not make it an admin.
        status, _ = await http_json(app, "GET", "/notify/rules/oncall", headers=IVAN)
        assert status == 404


async def test_an_open_server_acts_as_an_admin_and_needs_an_owner() -> None:
    async with running_server(**QUIET, sinks=SINKS) as app:
        status, reply = await http_json(app, "POST", "/notify/rules", rule())
        assert (status, reply["code"]) == (400, "invalid_field")
        assert "'owner' is required" in reply["message"]
        for owner in ("judy", "ivan"):
            status, made = await http_json(
                app, "POST", "/notify/rules", rule(owner=owner, events=["alert_resolved"])
            )
            assert (status, made["rule"]["owner"]) == (201, owner), made
        _, everyone = await http_json(app, "GET", "/notify/rules")
        assert [r["owner"] for r in everyone["rules"]] == ["judy", "ivan"]
        _, ivans = await http_json(app, "GET", "/notify/rules?owner=ivan")
        assert [r["owner"] for r in ivans["rules"]] == ["ivan"]
        status, reply = await http_json(app, "GET", "/notify/rules?owner=not%20a%20user")
        assert (status, reply["code"]) == (400, "invalid_field")


async def test_an_api_key_without_jwt_auth_guards_reads_and_writes() -> None:
    async with running_server(**QUIET, sinks=SINKS, api_key=KEY) as app:
        status, reply = await http_json(app, "POST", "/notify/rules", rule(owner="ivan"))
        assert (status, reply["code"]) == (401, "unauthorized")
        status, _ = await http_json(
            app, "POST", "/notify/rules", rule(id="r1", owner="ivan"), headers=BY_KEY
        )
        assert status == 201
        for method, body in [("PATCH", {"enabled": False}), ("DELETE", None), ("PUT", rule())]:
            status, reply = await http_json(app, method, "/notify/rules/r1", body)
            assert (status, reply["code"]) == (401, "unauthorized"), method
        status, reply = await http_json(
            app, "POST", "/notify/rules", rule(owner="ivan"), headers={"X-API-Key": "wrong"}
        )
        assert status == 401
        # Reading too: rules hold addresses and webhook URLs (a Slack URL is a credential).
        for path in ("/notify/rules", "/notify/rules/r1", "/notify/deliveries", "/notify/config"):
            status, reply = await http_json(app, "GET", path)
            assert (status, reply["code"]) == (401, "unauthorized"), path
        _, listed = await http_json(app, "GET", "/notify/rules", headers=BY_KEY)
        assert [r["id"] for r in listed["rules"]] == ["r1"]


async def test_destinations_the_server_cannot_use_are_refused() -> None:
    lab = dataclasses.replace(
        SINKS,
        slack_default_url=None,
        http=HttpSinkSettings(policy=UrlPolicy(allow_http=True)),
    )
    async with running_server(**secure(sinks=lab)) as app:
        for destination, words in [
            ({"kind": "webhook", "target": "default"}, "no default webhook"),
            ({"kind": "webhook"}, "no default webhook"),
            ({"kind": "slack", "target": "default"}, "no default slack"),
            ({"kind": "webhook", "target": "http://127.0.0.1/hook"}, "loopback"),
            ({"kind": "webhook", "target": "http://169.254.169.254/latest/"}, "link-local"),
            ({"kind": "slack", "target": "https://10.0.0.7/x"}, "private"),
            ({"kind": "webhook", "target": "https://localhost/x"}, "loopback"),
            ({"kind": "webhook", "target": "https://a:b@hooks.example.com/"}, "password"),
            ({"kind": "webhook", "target": "ftp://hooks.example.com/"}, "http"),
            ({"kind": "pigeon", "target": "default"}, "email, slack or webhook"),
        ]:
            for headers in (IVAN, ROOT):  # no one may, admins neither
                status, reply = await http_json(
                    app, "POST", "/notify/rules", rule(destination=destination), headers=headers
                )
                assert (status, reply["code"]) == (400, "invalid_field"), (destination, reply)
                assert words in reply["message"], reply
        status, made = await http_json(
            app,
            "POST",
            "/notify/rules",
            rule(destination={"kind": "webhook", "target": "https://hooks.example.com/ivan"}),
            headers=IVAN,
        )
        assert status == 201
        assert made["rule"]["destination"]["target"] == "https://hooks.example.com/ivan"
        _, listed = await http_json(app, "GET", "/notify/rules", headers=ROOT)
        assert [r["id"] for r in listed["rules"]] == [made["rule"]["id"]]
    # Where only e-mail is configured, the message names what is.
    mail_only = SinksConfig(email=SINKS.email, address_template=None)
    async with running_server(**secure(sinks=mail_only)) as app:
        for kind in ("slack", "webhook"):
            body = rule(destination={"kind": kind, "target": "https://hooks.example.com/x"})
            status, reply = await http_json(app, "POST", "/notify/rules", body, headers=ROOT)
            assert (status, reply["code"]) == (400, "invalid_field")
            assert f"does not deliver by {kind}" in reply["message"]
            assert "destination kinds: email" in reply["message"]
        # No template and a token without an address: "default" has nowhere to go.
        status, reply = await http_json(app, "POST", "/notify/rules", rule(), headers=IVAN)
        assert (status, reply["code"]) == (400, "invalid_field")
        assert "no e-mail address is known for ivan" in reply["message"]
        status, reply = await http_json(
            app, "POST", "/notify/rules", rule(owner="judy"), headers=ROOT
        )
        assert "no e-mail address is known for judy" in reply["message"]


async def test_a_default_address_that_only_the_token_knows_is_stored() -> None:
    no_template = dataclasses.replace(SINKS, address_template=None)
    claimed = bearer(hs256("ivan", email="ivan.p@lab.example.org"))
    async with running_server(**secure(sinks=no_template)) as app:
        status, made = await http_json(app, "POST", "/notify/rules", rule(), headers=claimed)
        assert status == 201, made
        assert made["rule"]["destination"] == {
            "kind": "email",
            "target": "ivan.p@lab.example.org",
        }
        # The same for a replacement, and the address stays the owner's own to use.
        status, replaced = await http_json(
            app, "PUT", f"/notify/rules/{made['rule']['id']}", rule(), headers=claimed
        )
        assert status == 200
        assert replaced["rule"]["destination"]["target"] == "ivan.p@lab.example.org"
        status, again = await http_json(
            app,
            "POST",
            "/notify/rules",
            rule(destination={"kind": "email", "target": "ivan.p@lab.example.org"}),
            headers=claimed,
        )
        assert status == 201
        # An admin's token says nothing of judy's mailbox: nothing to store.
        status, reply = await http_json(
            app, "POST", "/notify/rules", rule(owner="judy"), headers=bearer(admin(email="r@x.org"))
        )
        assert (status, reply["code"]) == (400, "invalid_field")
        assert again["rule"]["destination"]["target"] == "ivan.p@lab.example.org"
    async with running_server(**secure()) as app:
        for token, target in [
            (hs256("ivan", email="ivan@example.edu"), "default"),  # the template's own
            (hs256("ivan", email="ivan@EXAMPLE.EDU"), "default"),  # domains have no case
            (hs256("ivan", email="ivan.p@lab.example.org"), "ivan.p@lab.example.org"),
            (hs256("ivan"), "default"),
            (hs256("ivan", email="not an address"), "default"),  # untrusted: the template
        ]:
            status, made = await http_json(
                app, "POST", "/notify/rules", rule(), headers=bearer(token)
            )
            assert status == 201, made
            assert made["rule"]["destination"]["target"] == target, token


async def test_an_id_already_used_is_a_conflict(backend: Backend) -> None:
    async with running_server(**secure(database_url=backend.url)) as app:
        status, _ = await http_json(app, "POST", "/notify/rules", rule(id="nightly"), headers=IVAN)
        assert status == 201
        # Ids are one namespace: taken by ivan, taken for judy and the admin too.
        for headers, body in [
            (IVAN, rule(id="nightly")),
            (JUDY, rule(id="nightly")),
            (ROOT, rule(id="nightly", owner="judy")),
            (BY_KEY, rule(id="nightly", owner="ivan")),
        ]:
            status, reply = await http_json(app, "POST", "/notify/rules", body, headers=headers)
            assert (status, reply["code"]) == (409, "conflict"), headers
            # Whose it is stays untold.
            assert "nightly" in reply["message"] and "ivan" not in reply["message"]
        _, everyone = await http_json(app, "GET", "/notify/rules", headers=ROOT)
        assert [(r["id"], r["owner"]) for r in everyone["rules"]] == [("nightly", "ivan")]
        # The server keeps writing after the refused inserts (PostgreSQL's aborted ones).
        status, _ = await http_json(app, "POST", "/notify/rules", rule(id="weekly"), headers=IVAN)
        assert status == 201


# -- bad requests --------------------------------------------------------------------


#: (body, words in the message): each a 400 ``invalid_field``.
MALFORMED_RULES: list[tuple[dict[str, Any], str]] = [
    (rule(surprise=1), "unknown field 'surprise'"),
    (rule(events=[]), "non-empty list"),
    (rule(events="job_failed"), "non-empty list"),
    (rule(events=["job_exploded"]), "unknown event"),
    (rule(events=[["job_failed"]]), "unknown event"),
    (rule(events=["job_pending_long"]), "pending_minutes is required"),
    (rule(pending_minutes=5), "pending_minutes is required"),
    (rule(id="a b"), "id must be"),
    (rule(id="x" * 65), "id must be"),
    (rule(id="nul\0"), "id must be"),
    (rule(id=7), "id must be"),
    (rule(id=None), "id must be"),
    (rule(name_pattern="train\0"), "name_pattern"),
    (rule(name_pattern="x" * 129), "name_pattern"),
    (rule(partitions=["gpu", "a/b"]), "partition"),
    (rule(partitions=[f"p{i}" for i in range(33)]), "partitions"),
    (rule(min_run_seconds=-1), "min_run_seconds"),
    (rule(min_run_seconds=True), "min_run_seconds"),
    (rule(min_run_seconds=1.5), "min_run_seconds"),
    (rule(enabled="yes"), "'enabled'"),
    (rule(enabled=None), "'enabled'"),
    (rule(owner=5), "'owner'"),
    (rule(owner="bad\0name"), "'owner'"),
    ({"events": ["job_failed"]}, "destination"),
    (rule(destination="email"), "destination"),
    (rule(destination={"kind": "email", "target": "default", "cc": "x"}), "destination"),
    (rule(destination={"kind": "email", "target": "a@b.example\r\nBcc: x@y.org"}), "target"),
    (rule(destination={"kind": "email", "target": "ivan@example.edu\0"}), "target"),
    (rule(destination={"kind": "email", "target": "two@at@example.edu"}), "target"),
    (rule(destination={"kind": "webhook", "target": "https://hooks.example.com/\0"}), "url"),
    (rule(destination={"kind": "webhook", "target": "https://h.example.com/" + "x" * 2048}), "url"),
    (rule(destination={"kind": "webhook", "target": 7}), "url"),
    (rule(destination={"kind": ["email"]}), "destination kind"),
]


async def test_a_malformed_rule_is_refused_clearly() -> None:
    async with running_server(**secure()) as app:
        status, reply = await http_json(app, "PUT", "/notify/rules/r1", rule(), headers=IVAN)
        assert (status, reply["code"]) == (404, "not_found")
        for body, words in MALFORMED_RULES:
            status, reply = await http_json(app, "POST", "/notify/rules", body, headers=IVAN)
            assert (status, reply["code"]) == (400, "invalid_field"), (body, reply)
            assert words in reply["message"], (body, reply)
        _, made = await http_json(app, "POST", "/notify/rules", rule(id="r1"), headers=IVAN)
        for body, words in MALFORMED_RULES:
            if "id" in body:
                continue  # PUT: the path's id wins over the body's
            status, reply = await http_json(app, "PUT", "/notify/rules/r1", body, headers=IVAN)
            assert (status, reply["code"]) == (400, "invalid_field"), (body, reply)
            assert words in reply["message"], (body, reply)
        # Whatever was refused, the server still answers, and the rule is as it was.
        status, listed = await http_json(app, "GET", "/notify/rules", headers=ROOT)
        assert (status, listed["rules"]) == (200, [made["rule"]])


async def test_malformed_requests_get_a_clear_4xx_and_the_server_keeps_serving() -> None:
    async with running_server(**secure()) as app:
        _, made = await http_json(app, "POST", "/notify/rules", rule(id="r1"), headers=IVAN)
        path = "/notify/rules/r1"
        for method, target, raw, status, code in [
            ("POST", "/notify/rules", b"{", 400, "invalid_json"),
            ("POST", "/notify/rules", b"[1]", 400, "not_an_object"),
            ("POST", "/notify/rules", b"", 400, "invalid_json"),
            ("PUT", path, b"null", 400, "not_an_object"),
            ("PATCH", path, b"{}", 400, "invalid_field"),
            ("PATCH", path, b'{"enabled": "no"}', 400, "invalid_field"),
            ("PATCH", path, b'{"enabled": 1}', 400, "invalid_field"),
            ("PATCH", path, b'{"enabled": false, "events": []}', 400, "invalid_field"),
            ("POST", "/notify/rules", json.dumps(_nested(40)).encode(), 400, "nesting_too_deep"),
        ]:
            got, reply = await http_json(app, method, target, raw=raw, headers=IVAN)
            assert (got, reply["code"]) == (status, code), (method, target, raw, reply)
        status, reply = await http_json(
            app,
            "POST",
            "/notify/rules",
            raw=json.dumps(rule()).encode(),
            headers={**IVAN, "Content-Type": "text/plain"},
        )
        assert (status, reply["code"]) == (415, "unsupported_media_type")
        for headers, code in [
            ({}, "unauthorized"),
            (bearer("not.a.token"), "invalid_token"),
            (bearer(hs256("ivan", secret="another-secret-0123456789abcdef0123")), "invalid_token"),
            (bearer(hs256("ivan", ttl=-60)), "token_expired"),
            (bearer("tokén"), "invalid_token"),
            ({"X-API-Key": "wrong"}, "unauthorized"),
        ]:
            for method, target, body in [
                ("GET", "/notify/config", None),
                ("GET", "/notify/rules", None),
                ("POST", "/notify/rules", rule(owner="ivan")),
                ("DELETE", path, None),
                ("GET", "/notify/deliveries", None),
                ("POST", "/notify/deliveries/d1/retry", None),
            ]:
                status, reply = await http_json(app, method, target, body, headers=headers)
                assert (status, reply["code"]) == (401, code), (method, target, headers, reply)
        status, reply = await http_json(
            app, "PUT", path, rule(events=["alert_firing"]), headers=IVAN
        )
        assert (status, reply["code"]) == (403, "forbidden")
        status, reply = await http_json(app, "POST", "/notify/config", {}, headers=IVAN)
        assert status == 405
        # Nothing of all that changed the rule, and the server still answers.
        status, kept = await http_json(app, "GET", path, headers=IVAN)
        assert (status, kept["rule"]) == (200, made["rule"])
        status, _ = await http_json(app, "GET", "/notify/config", headers=IVAN)
        assert status == 200


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return {**rule(), "destination": value}


async def test_ids_no_row_can_have_are_404_without_asking_the_database(tmp_path: Path) -> None:
    # A file where the data directory's parent should be: the database cannot be opened.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    down = default_url(blocker / "data")
    async with running_server(**secure(database_url=down)) as app:
        status, reply = await http_json(app, "GET", "/notify/rules/r1", headers=IVAN)
        assert (status, reply["code"]) == (503, "storage_unavailable")
        status, reply = await http_json(app, "GET", "/notify/rules", headers=IVAN)
        assert (status, reply["code"]) == (503, "storage_unavailable")
        long = "x" * 65
        for method, path, body in [
            ("GET", f"/notify/rules/{long}", None),
            ("PUT", f"/notify/rules/{long}", rule()),
            ("PATCH", f"/notify/rules/{long}", {"enabled": True}),
            ("DELETE", f"/notify/rules/{long}", None),
            ("GET", "/notify/rules/nul%00", None),
            ("DELETE", "/notify/rules/nul%00", None),
            ("GET", f"/notify/deliveries/{long}", None),
            ("POST", f"/notify/deliveries/{long}/retry", None),
            ("GET", "/notify/deliveries/nul%00", None),
        ]:
            status, reply = await http_json(app, method, path, body, headers=IVAN)
            assert (status, reply["code"]) == (404, "not_found"), (method, path, reply)


# -- deliveries ----------------------------------------------------------------------


async def _outbox_with(app: SlurmcastApp) -> dict[str, str]:
    """Deliveries of ivan and judy in every state; their ids by name.

    They are dated a day ahead, so the delivery worker (which goes by the clock) finds none
    of them due: each stays in the state it is put in here.
    """
    outbox = app.notifications.outbox
    base = datetime.now(UTC) + timedelta(days=1)
    made: dict[str, str] = {}
    plan = [
        ("ivan", "dead"),
        ("ivan", "delivered"),
        ("judy", "dead"),
        ("ivan", "delivering"),
        ("ivan", "dead2"),
        ("judy", "pending"),
        ("ivan", "pending"),
    ]
    for i, (owner, state) in enumerate(plan):
        at = base + timedelta(seconds=i)
        note = Notification(
            id=f"n-{owner}-{state}",
            type=NotificationType.JOB_FAILED,
            title="Job Failed",
            message=f"Job #{i} failed",
            severity=Severity.ERROR,
            created_at=at,
            user=owner,
            details={"job_id": str(i)},
        )
        delivery_id = f"d-{owner}-{state}"
        delivery = NewDelivery(
            note.id,
            owner,
            "rule-1",
            DestinationKind.EMAIL,
            f"{owner}@example.edu",
            {"event": "job_failed", "job": {"job_id": str(i)}},
            id=delivery_id,
        )
        await outbox.add_with_notification([note], [delivery], at)
        # Rows made before are dead, delivered, or held for a day: a claim at ``at`` takes
        # this one only.
        if state != "pending":
            (claimed,) = await outbox.claim("test", at, 86400.0, 10)
            assert claimed.id == delivery_id
        if state.startswith("dead"):
            assert await outbox.failed(delivery_id, "550 no such user", None, at, by="test")
        elif state == "delivered":
            assert await outbox.delivered(delivery_id, at, by="test")
        made[f"{owner}-{state}"] = delivery_id
    return made


async def test_deliveries_are_listed_got_and_retried(backend: Backend) -> None:
    async with running_server(**secure(database_url=backend.url)) as app:
        ids = await _outbox_with(app)
        status, page = await http_json(app, "GET", "/notify/deliveries", headers=IVAN)
        assert status == 200 and page["next_before"] is None
        assert [d["id"] for d in page["deliveries"]] == [
            ids["ivan-pending"],
            ids["ivan-dead2"],
            ids["ivan-delivering"],
            ids["ivan-delivered"],
            ids["ivan-dead"],
        ]
        states = {d["id"]: (d["state"], d["attempts"]) for d in page["deliveries"]}
        assert states[ids["ivan-pending"]] == ("pending", 0)
        assert states[ids["ivan-dead"]] == ("dead", 1)
        assert states[ids["ivan-delivered"]] == ("delivered", 1)
        assert states[ids["ivan-delivering"]] == ("delivering", 1)

        _, dead = await http_json(app, "GET", "/notify/deliveries?state=dead", headers=IVAN)
        assert [d["id"] for d in dead["deliveries"]] == [ids["ivan-dead2"], ids["ivan-dead"]]
        assert dead["deliveries"][0]["last_error"] == "550 no such user"
        _, first = await http_json(app, "GET", "/notify/deliveries?limit=2", headers=IVAN)
        assert len(first["deliveries"]) == 2 and first["next_before"]
        _, rest = await http_json(
            app, "GET", f"/notify/deliveries?limit=2&before={first['next_before']}", headers=IVAN
        )
        _, last = await http_json(
            app, "GET", f"/notify/deliveries?limit=2&before={rest['next_before']}", headers=IVAN
        )
        assert last["next_before"] is None
        paged = [d["id"] for p in (first, rest, last) for d in p["deliveries"]]
        assert paged == [d["id"] for d in page["deliveries"]]

        # Judy's are not ivan's to see, or to retry.
        status, reply = await http_json(app, "GET", "/notify/deliveries?owner=judy", headers=IVAN)
        assert (status, reply["code"]) == (403, "forbidden")
        for method, path in [
            ("GET", f"/notify/deliveries/{ids['judy-dead']}"),
            ("POST", f"/notify/deliveries/{ids['judy-dead']}/retry"),
            ("GET", "/notify/deliveries/no-such"),
            ("POST", "/notify/deliveries/no-such/retry"),
        ]:
            status, reply = await http_json(app, method, path, headers=IVAN)
            assert (status, reply["code"]) == (404, "not_found"), path
        _, hers = await http_json(
            app, "GET", f"/notify/deliveries/{ids['judy-dead']}", headers=JUDY
        )
        assert hers["delivery"]["state"] == "dead"

        status, one = await http_json(
            app, "GET", f"/notify/deliveries/{ids['ivan-dead']}", headers=IVAN
        )
        assert status == 200
        assert {k: one["delivery"][k] for k in ("owner", "kind", "target", "state")} == {
            "owner": "ivan",
            "kind": "email",
            "target": "ivan@example.edu",
            "state": "dead",
        }
        for name in ("ivan-pending", "ivan-delivered", "ivan-delivering"):
            status, reply = await http_json(
                app, "POST", f"/notify/deliveries/{ids[name]}/retry", headers=IVAN
            )
            assert (status, reply["code"]) == (409, "conflict"), name
            assert name.split("-")[1] in reply["message"]

        # Admins see everyone's, or one owner's.
        _, everyone = await http_json(app, "GET", "/notify/deliveries", headers=ROOT)
        assert set(ids.values()) <= {d["id"] for d in everyone["deliveries"]}
        _, judys = await http_json(
            app, "GET", "/notify/deliveries?owner=judy&state=dead", headers=BY_KEY
        )
        assert [d["id"] for d in judys["deliveries"]] == [ids["judy-dead"]]


async def test_a_retried_delivery_is_pending_again_and_the_worker_is_told(
    backend: Backend,
) -> None:
    async with running_server(**secure(database_url=backend.url)) as app:
        ids = await _outbox_with(app)
        before = datetime.now(UTC)
        path = f"/notify/deliveries/{ids['ivan-dead']}"
        status, retried = await http_json(app, "POST", f"{path}/retry", headers=IVAN)
        assert status == 200, retried
        again = retried["delivery"]
        assert (again["id"], again["state"], again["attempts"]) == (ids["ivan-dead"], "pending", 0)
        assert again["last_error"] == "550 no such user"  # kept until the next failure
        due = datetime.fromisoformat(again["next_attempt_at"])
        assert before - timedelta(seconds=1) <= due <= datetime.now(UTC) + timedelta(seconds=1)
        # The worker looks at the outbox every hour here: claiming it at once means it was
        # woken (deliveries_changed). Its attempt then fails (no mail server listens).
        await eventually(
            lambda: http_json(app, "GET", path, headers=IVAN),
            lambda reply: reply[1]["delivery"]["attempts"] >= 1,
            timeout=10.0,
        )
        # An admin may retry anyone's.
        status, judys = await http_json(
            app, "POST", f"/notify/deliveries/{ids['judy-dead']}/retry", headers=ROOT
        )
        assert (status, judys["delivery"]["state"]) == (200, "pending")
        # The others did not move.
        _, other = await http_json(
            app, "GET", f"/notify/deliveries/{ids['ivan-dead2']}", headers=IVAN
        )
        assert (other["delivery"]["state"], other["delivery"]["attempts"]) == ("dead", 1)


async def test_bad_delivery_queries_are_refused(backend: Backend) -> None:
    async with running_server(**secure(database_url=backend.url)) as app:
        for query, words in [
            ("state=lost", "'state' must be one of pending, delivering, delivered, dead"),
            ("limit=0", "'limit'"),
            ("limit=501", "'limit'"),
            ("limit=ten", "'limit'"),
            ("before=garbage", "cursor"),
            ("owner=bad%00name", "'owner'"),
        ]:
            status, reply = await http_json(app, "GET", f"/notify/deliveries?{query}", headers=ROOT)
            assert (status, reply["code"]) == (400, "invalid_field"), (query, reply)
            assert words in reply["message"], reply
        status, _ = await http_json(
            app, "GET", "/notify/deliveries?state=dead&limit=500", headers=ROOT
        )
        assert status == 200


# -- the OpenAPI document --------------------------------------------------------------


async def test_every_notify_route_is_documented_and_every_documented_one_served() -> None:
    """tests/test_specs.py's check, on a server that has the /notify routes."""
    async with running_server(**QUIET, sinks=SINKS) as app:
        registered = {
            (route.resource.canonical, route.method.lower())
            for route in app.http.app.router.routes()
            if route.resource is not None and route.method not in ("HEAD", "*")
        }
    documented = {
        (path, method)
        for path, operations in openapi_document()["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    notify = {(path, method) for path, method in registered if path.startswith("/notify")}
    assert len(notify) == 10
    assert registered - documented == set(), "routes missing from openapi.json"
    assert documented - registered == set(), "openapi.json documents routes nobody serves"


async def test_the_document_is_served_with_the_notify_paths() -> None:
    async with (
        running_server(**QUIET, sinks=SINKS) as app,
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{app.http.port}/openapi.json") as response,
    ):
        served = await response.json()
    assert "/notify/rules/{id}" in served["paths"]
    assert served["components"]["schemas"]["NotifyRule"]["additionalProperties"] is False
