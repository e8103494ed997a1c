"""The notifications API: stored notifications, read state, operator announcements.

* ``GET /notifications?user=&unread=true&limit=&before=``: newest first, a
  page at a time (``next_before`` is the cursor of the next page).
* ``POST /notifications`` (admin): create a ``system``/``info``/``alert``
  notification, store it and broadcast it live. Its ``data`` is at most
  ``MAX_DATA_BYTES`` as JSON and, like every body, 32 levels deep
  (``http.bodies.MAX_JSON_DEPTH``).
* ``POST /notifications/{id}/read`` and ``POST /notifications/read-all``.

With authentication on, a user sees and marks only their own notifications
(and sees operator announcements, which are addressed to no one); an admin
may name any ``user``. Without authentication the ``user`` parameter says
whose notifications are meant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from slurmcast.core.channels import is_valid_user_name
from slurmcast.core.notifications import Notification, NotificationType, Severity
from slurmcast.core.policy import Principal
from slurmcast.errors import ErrorCode
from slurmcast.http.bodies import json_object
from slurmcast.http.context import GUARD_KEY, NEW_ID_KEY, NODE_KEY, STORE_KEY
from slurmcast.http.errors import HttpError, from_store, page_limit
from slurmcast.http.responses import json_response
from slurmcast.storage.models import ID_LENGTH

#: Kinds an operator may create (job notifications come from the monitors).
OPERATOR_TYPES = (NotificationType.SYSTEM, NotificationType.INFO, NotificationType.ALERT)
MAX_TITLE = 200
MAX_MESSAGE = 4000
#: Largest ``data`` of an announcement, as JSON. It is stored, and sent in
#: every page of notifications that holds it.
MAX_DATA_BYTES = 65536


def _whose(request: web.Request, principal: Principal) -> str | None:
    """The user whose notifications a request is about (None: everyone's, admins only)."""
    asked = request.query.get("user") or None
    if asked is not None and not is_valid_user_name(asked):
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'user' is not a valid user name")
    if not principal.authenticated or principal.is_admin:
        return asked
    if asked is not None and asked != principal.user:
        raise HttpError(403, ErrorCode.FORBIDDEN, "you may only see your own notifications")
    return principal.user


async def list_notifications(request: web.Request) -> web.Response:
    principal = request.app[GUARD_KEY].reader(request)
    user = _whose(request, principal)
    unread = request.query.get("unread", "false").lower() in ("1", "true", "yes")
    limit = page_limit(request)
    page = await from_store(
        request.app[STORE_KEY].list(
            user, unread_only=unread, limit=limit, before=request.query.get("before") or None
        )
    )
    return json_response(
        {"success": True, "notifications": page.items, "next_before": page.next_before}
    )


async def create_notification(request: web.Request) -> web.Response:
    who = request.app[GUARD_KEY].require_admin(request)
    body = await json_object(request)
    notification = _notification_from(body, request.app[NEW_ID_KEY]())
    await from_store(request.app[STORE_KEY].add([notification]))
    await request.app[NODE_KEY].publish_events([notification], notification.created_at)
    data = notification.data()
    data["created_by"] = who
    return json_response({"success": True, "notification": data}, status=201)


def _notification_from(body: dict[str, Any], new_id: str) -> Notification:
    def text(name: str, limit: int, default: str | None = None) -> str:
        value = body.get(name, default)
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise HttpError(
                400,
                ErrorCode.INVALID_FIELD,
                f"'{name}' must be a string of 1 to {limit} characters",
            )
        if "\0" in value:  # PostgreSQL cannot store it; SQLite would: refused on both
            raise HttpError(400, ErrorCode.INVALID_FIELD, f"'{name}' must not contain NUL")
        return value

    kind = body.get("type", "system")
    if kind not in {t.value for t in OPERATOR_TYPES}:
        allowed = ", ".join(t.value for t in OPERATOR_TYPES)
        raise HttpError(400, ErrorCode.INVALID_FIELD, f"'type' must be one of {allowed}")
    severity = body.get("severity", "info")
    if severity not in {s.value for s in Severity}:
        allowed = ", ".join(s.value for s in Severity)
        raise HttpError(400, ErrorCode.INVALID_FIELD, f"'severity' must be one of {allowed}")
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or not is_valid_user_name(user)):
        raise HttpError(
            400, ErrorCode.INVALID_FIELD, "'user' must be a user name, or absent for everyone"
        )
    details = body.get("data", {})
    if not isinstance(details, dict):
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'data' must be an object")
    # json_object has bounded the nesting, so this cannot fail.
    if len(orjson.dumps(details)) > MAX_DATA_BYTES:
        raise HttpError(
            400, "field_too_large", f"'data' must be at most {MAX_DATA_BYTES} bytes as JSON"
        )
    return Notification(
        id=new_id,
        type=NotificationType(kind),
        title=text("title", MAX_TITLE),
        message=text("message", MAX_MESSAGE),
        severity=Severity(severity),
        created_at=datetime.now(UTC),
        user=user,
        details=details,
    )


async def mark_one_read(request: web.Request) -> web.Response:
    principal = request.app[GUARD_KEY].reader(request)
    marker = _marker(request, principal)
    notification_id = request.match_info["id"]
    if len(notification_id) > ID_LENGTH or "\0" in notification_id:
        # Names no notification (the database would refuse it as a value).
        raise HttpError(404, ErrorCode.NOT_FOUND, f"no notification {notification_id[:64]!r}")
    marked = await from_store(request.app[STORE_KEY].mark_read([notification_id], marker))
    if not marked:
        raise HttpError(
            404, ErrorCode.NOT_FOUND, f"no notification {notification_id[:64]!r} of yours to mark"
        )
    return json_response({"success": True, "ids": marked})


async def mark_all_read(request: web.Request) -> web.Response:
    principal = request.app[GUARD_KEY].reader(request)
    marker = _marker(request, principal)
    count = await from_store(request.app[STORE_KEY].mark_all_read(marker))
    return json_response({"success": True, "marked": count})


def _marker(request: web.Request, principal: Principal) -> str | None:
    """Whose notifications may be marked: a user's own; an admin's or open server's choice."""
    if principal.authenticated and not principal.is_admin:
        return principal.user
    return _whose(request, principal)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/notifications", list_notifications)
    app.router.add_post("/notifications", create_notification)
    app.router.add_post("/notifications/read-all", mark_all_read)
    app.router.add_post("/notifications/{id}/read", mark_one_read)
