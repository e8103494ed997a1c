"""The notification rules and deliveries API (issue 18), present when ``[sinks]`` is configured.

* ``GET /notify/config``: the destination kinds this server delivers to, which have an
  operator default, the events the caller may ask for and the caller's own address.
* ``GET /notify/rules?owner=``, ``POST /notify/rules``; ``GET``, ``PUT`` (whole rule),
  ``PATCH`` (``enabled`` only) and ``DELETE /notify/rules/{id}``.
* ``GET /notify/deliveries?state=&owner=&limit=&before=`` (newest first, a page at a time),
  ``GET /notify/deliveries/{id}``, ``POST /notify/deliveries/{id}/retry`` (a dead one only).

Who: with JWT auth a user sees and changes only their own rules and deliveries (another's
answers 404, as one that does not exist: ids are not a way to learn what others have) and
naming another ``owner`` is 403; an admin (the ``admin`` role or the API key) sees every
one and may name any ``owner``. Without authentication every caller acts as an admin, as on
/notifications, and must say whose rule it creates. A server with an API key but no JWT
auth wants the key for writes: a rule may mail any address or call a webhook, which only an
admin may set up.

What a rule may say is ``core.notify.rules``' business (``parse_rule``); this module decides
whose it is, checks it against the destinations the operator configured, and stores it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from slurmcast.core.channels import is_valid_user_name
from slurmcast.core.notify.addresses import DEFAULT_TARGET, own_address, same_address
from slurmcast.core.notify.errors import ForbiddenDestination, InvalidRule, UnsafeDestination
from slurmcast.core.notify.rules import (
    ALERT_EVENTS,
    DestinationKind,
    NotifyEvent,
    Rule,
    parse_rule,
)
from slurmcast.core.timefmt import iso_z
from slurmcast.errors import ErrorCode, ProtocolError, StorageError
from slurmcast.http.bodies import json_object
from slurmcast.http.context import GUARD_KEY, NOTIFY_KEY, NotifyApi
from slurmcast.http.errors import HttpError, from_store, page_limit
from slurmcast.http.guard import API_KEY_ADMIN
from slurmcast.http.responses import json_response
from slurmcast.sinks.config import SinksConfig
from slurmcast.storage.models import ID_LENGTH, RULE_ID_LENGTH
from slurmcast.storage.outbox import DeliveryState, StoredRule, new_rule_id

#: The error code of a request that contradicts what is stored: a rule id already used, a
#: retry of a delivery that is not dead. Only the HTTP API uses it (see ``HttpError``).
CONFLICT = "conflict"
#: Fields of a rule's body this module reads itself; ``parse_rule`` reads the others.
_OWN_FIELDS = ("enabled", "owner")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, as this API sees it.

    ``user`` is the person behind a token; None for the API key and on an open server, which
    have no rules of their own. ``email`` is their token's address claim, unchecked.
    """

    user: str | None
    admin: bool
    email: str | None = None

    @property
    def scope(self) -> str | None:
        """Whose rows the caller may see and change: their own, or None for all (an admin)."""
        return None if self.admin else self.user


def caller(request: web.Request, *, write: bool = False) -> Caller:
    """The caller of a request.

    Raises:
        HttpError: 401 without valid credentials where they are needed.
    """
    guard = request.app[GUARD_KEY]
    principal = guard.reader(request)
    if principal is API_KEY_ADMIN:
        return Caller(None, admin=True)
    if not principal.authenticated:
        if guard.protected:
            # An API key without JWT auth: rules hold people's addresses and webhook URLs
            # (a Slack URL is a secret), and a rule can mail any address or call a webhook
            # from inside the site: reading and writing both want the key.
            guard.require_admin(request)
        return Caller(None, admin=True)
    return Caller(principal.user, admin=principal.is_admin, email=principal.email)


def caller_address(owner: str, who: Caller, sinks: SinksConfig) -> str | None:
    """``owner``'s own e-mail address as far as this request can tell.

    The token's claim counts only when the owner is the one asking: an admin's token says
    nothing about someone else's mailbox.
    """
    claim = who.email if who.user == owner and sinks.address_claim else None
    return own_address(owner, claim=claim, template=sinks.address_template)


def rule_data(stored: StoredRule) -> dict[str, Any]:
    """A stored rule as the API shows it: its spec (``Rule.data``), enabled and times.

    The id and owner come from the row, which is what scoping and deleting go by; the spec's
    fields are picked one by one so that whatever else a spec holds is not shown.
    """
    spec = stored.spec
    return {
        "id": stored.id,
        "owner": stored.owner,
        "enabled": stored.enabled,
        "events": spec.get("events", []),
        "partitions": spec.get("partitions", []),
        "name_pattern": spec.get("name_pattern"),
        "min_run_seconds": spec.get("min_run_seconds"),
        "pending_minutes": spec.get("pending_minutes"),
        "destination": spec.get("destination", {}),
        "created_at": iso_z(stored.created_at),
        "updated_at": iso_z(stored.updated_at),
    }


# -- reading a rule from a body ------------------------------------------------------


def rule_from(
    body: dict[str, Any],
    owner: str,
    who: Caller,
    sinks: SinksConfig,
    *,
    rule_id: str | None,
) -> tuple[Rule, bool]:
    """The rule a POST or PUT body describes for ``owner``, and whether it is enabled.

    ``rule_id`` wins over the body's ``id`` (None: the body's is used). ``owner`` in the body
    is the caller's business (``new_owner``) and ignored here.

    Raises:
        HttpError: 400 for a malformed rule, an unconfigured destination kind, a ``default``
            target with nothing behind it or a refused URL; 403 for alert events or another's
            address asked by a non-admin.
    """
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'enabled' must be true or false")
    spec = {key: value for key, value in body.items() if key not in _OWN_FIELDS}
    destination = spec.get("destination")
    kind, target = _kind_and_target(destination)
    if kind is not None and kind.value not in sinks.kinds:
        configured = ", ".join(sorted(sinks.kinds)) or "none"
        raise HttpError(
            400,
            ErrorCode.INVALID_FIELD,
            f"this server does not deliver by {kind.value}; destination kinds: {configured}",
        )
    own = caller_address(owner, who, sinks)
    if kind is DestinationKind.EMAIL and target == DEFAULT_TARGET and own is None:
        # parse_rule would say "for you", which is wrong when an admin writes bob's rule.
        raise HttpError(
            400,
            ErrorCode.INVALID_FIELD,
            f"no e-mail address is known for {owner}, so target 'default' has nowhere to go: "
            "an admin may name an address, or the operator sets address_template",
        )
    rule = _parsed(spec, owner, who, sinks, own, rule_id)
    chosen = rule.destination
    if chosen.target == DEFAULT_TARGET:
        if chosen.kind is DestinationKind.EMAIL:
            rule = _pinned_address(rule, owner, own, sinks)
        elif not sinks.defaults().get(chosen.kind.value, False):
            raise HttpError(
                400,
                ErrorCode.INVALID_FIELD,
                f"this server has no default {chosen.kind.value} destination: "
                "give a URL as the target",
            )
    return rule, enabled


def _kind_and_target(destination: object) -> tuple[DestinationKind | None, object]:
    """A body's destination kind, if it is one of the known kinds, and its target."""
    if not isinstance(destination, dict):
        return None, None
    kind = destination.get("kind")
    if not isinstance(kind, str) or kind not in {k.value for k in DestinationKind}:
        return None, None  # parse_rule says what is wrong
    return DestinationKind(kind), destination.get("target", DEFAULT_TARGET)


def _parsed(
    spec: dict[str, Any],
    owner: str,
    who: Caller,
    sinks: SinksConfig,
    own: str | None,
    rule_id: str | None,
) -> Rule:
    try:
        return parse_rule(
            spec,
            owner,
            who.admin,
            own_address=own,
            url_policy=sinks.url_policy,
            rule_id=rule_id,
        )
    except UnsafeDestination as exc:
        # A URL no one may use is a wrong value, not a missing right: 400, so that nobody
        # goes asking an admin for a permission the server grants to no one.
        raise HttpError(
            400, ErrorCode.INVALID_FIELD, f"the destination is refused: {exc.message}"
        ) from None
    except ForbiddenDestination as exc:
        raise HttpError(403, ErrorCode.FORBIDDEN, exc.message) from None
    except InvalidRule as exc:
        raise HttpError(400, ErrorCode.INVALID_FIELD, exc.message) from None


def _pinned_address(rule: Rule, owner: str, own: str | None, sinks: SinksConfig) -> Rule:
    """``default`` replaced by the address itself when only the token's claim gave it.

    The delivery is sent long after this request, without the token: the template is all
    the sender will know, so an address it would not give must be stored now.
    """
    if own is None:
        return rule
    templated = own_address(owner, template=sinks.address_template)
    if templated is not None and same_address(templated, own):
        return rule
    return dataclasses.replace(rule, destination=dataclasses.replace(rule.destination, target=own))


def new_owner(body: dict[str, Any], who: Caller) -> str:
    """Whose rule a POST creates: the body's ``owner`` (admins), else the caller.

    Raises:
        HttpError: 400 for a bad ``owner`` or none where there is no caller to default to,
            403 for a non-admin naming someone else.
    """
    asked = body.get("owner")
    if asked is not None and (not isinstance(asked, str) or not is_valid_user_name(asked)):
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'owner' must be a user name")
    if asked is None:
        if who.user is None:
            raise HttpError(
                400,
                ErrorCode.INVALID_FIELD,
                "'owner' is required: say whose rule this is (the API key and an open "
                "server have no rules of their own)",
            )
        return who.user
    if not who.admin and asked != who.user:
        raise HttpError(403, ErrorCode.FORBIDDEN, "you may only create rules of your own")
    return asked


def listed_owner(request: web.Request, who: Caller) -> str | None:
    """Whose rules or deliveries a listing is about (None: everyone's, admins only).

    Raises:
        HttpError: 400 for an invalid ``owner``, 403 for a non-admin naming another.
    """
    asked = request.query.get("owner") or None
    if asked is not None and not is_valid_user_name(asked):
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'owner' is not a valid user name")
    if who.admin:
        return asked
    if asked is not None and asked != who.user:
        raise HttpError(403, ErrorCode.FORBIDDEN, "you may only see your own rules and deliveries")
    return who.user


def _path_id(request: web.Request, what: str, length: int) -> str:
    """The ``{id}`` of the path; 404 at once for one no row can have.

    Longer than the column, a NUL or a lone surrogate: the database would refuse it as a
    value (a 400 for what is simply not there), so it is not asked.
    """
    value = request.match_info["id"]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HttpError(404, ErrorCode.NOT_FOUND, f"no {what} of that id") from None
    if len(value) > length or "\0" in value:
        raise HttpError(404, ErrorCode.NOT_FOUND, f"no {what} {value[:64]!r}")
    return value


def _no_rule(rule_id: str) -> HttpError:
    return HttpError(404, ErrorCode.NOT_FOUND, f"no rule {rule_id!r} of yours")


def _no_delivery(delivery_id: str) -> HttpError:
    return HttpError(404, ErrorCode.NOT_FOUND, f"no delivery {delivery_id!r} of yours")


# -- the handlers --------------------------------------------------------------------


async def get_config(request: web.Request) -> web.Response:
    who = caller(request)
    sinks = request.app[NOTIFY_KEY].sinks
    events = [e.value for e in NotifyEvent if who.admin or e not in ALERT_EVENTS]
    email = caller_address(who.user, who, sinks) if who.user is not None else None
    return json_response(
        {
            "success": True,
            "kinds": sorted(sinks.kinds),
            "defaults": sinks.defaults(),
            "events": events,
            "email": email,
            "admin": who.admin,
        }
    )


async def list_rules(request: web.Request) -> web.Response:
    who = caller(request)
    owner = listed_owner(request, who)
    outbox = request.app[NOTIFY_KEY].outbox
    rules = await from_store(outbox.rules_for(owner) if owner is not None else outbox.all_rules())
    return json_response({"success": True, "rules": [rule_data(r) for r in rules]})


async def create_rule(request: web.Request) -> web.Response:
    who = caller(request, write=True)
    notify = request.app[NOTIFY_KEY]
    body = await json_object(request)
    owner = new_owner(body, who)
    rule, enabled = rule_from(
        body, owner, who, notify.sinks, rule_id=None if "id" in body else new_rule_id()
    )
    stored = await _add_rule(notify, rule, enabled)
    notify.rules_changed()
    return json_response({"success": True, "rule": rule_data(stored)}, status=201)


async def _add_rule(notify: NotifyApi, rule: Rule, enabled: bool) -> StoredRule:
    try:
        return await notify.outbox.add_rule(
            rule.owner, rule.data(), notify.clock(), enabled=enabled, id=rule.id
        )
    except StorageError as exc:
        raise HttpError(503, exc.code, exc.message) from None
    except ProtocolError as exc:
        # The id is the table's key, shared by all users; parse_rule has checked the rest.
        # Asking again afterwards also catches two requests racing for one id.
        if await from_store(notify.outbox.get_rule(rule.id)) is not None:
            raise HttpError(
                409, CONFLICT, f"the rule id {rule.id!r} is taken: choose another"
            ) from None
        raise HttpError(400, exc.code, exc.message) from None


async def get_rule(request: web.Request) -> web.Response:
    who = caller(request)
    rule_id = _path_id(request, "rule", RULE_ID_LENGTH)
    stored = await from_store(request.app[NOTIFY_KEY].outbox.get_rule(rule_id, owner=who.scope))
    if stored is None:
        raise _no_rule(rule_id)
    return json_response({"success": True, "rule": rule_data(stored)})


async def replace_rule(request: web.Request) -> web.Response:
    who = caller(request, write=True)
    notify = request.app[NOTIFY_KEY]
    rule_id = _path_id(request, "rule", RULE_ID_LENGTH)
    existing = await from_store(notify.outbox.get_rule(rule_id, owner=who.scope))
    if existing is None:
        raise _no_rule(rule_id)
    body = await json_object(request)
    if body.get("owner", existing.owner) != existing.owner:
        raise HttpError(
            400,
            ErrorCode.INVALID_FIELD,
            f"'owner' cannot be changed (the rule is {existing.owner}'s): "
            "create a rule for the new owner and delete this one",
        )
    # Checked for the stored owner, whoever edits it: an admin's edit of bob's rule may
    # mail any address, bob's own may not.
    rule, enabled = rule_from(body, existing.owner, who, notify.sinks, rule_id=rule_id)
    updated = await from_store(
        notify.outbox.update_rule(
            rule_id, notify.clock(), owner=who.scope, spec=rule.data(), enabled=enabled
        )
    )
    if updated is None:  # deleted meanwhile
        raise _no_rule(rule_id)
    notify.rules_changed()
    return json_response({"success": True, "rule": rule_data(updated)})


async def patch_rule(request: web.Request) -> web.Response:
    who = caller(request, write=True)
    notify = request.app[NOTIFY_KEY]
    rule_id = _path_id(request, "rule", RULE_ID_LENGTH)
    body = await json_object(request)
    unknown = sorted(key for key in body if key != "enabled")
    if unknown:
        raise HttpError(
            400,
            ErrorCode.INVALID_FIELD,
            f"unknown field {unknown[0]!r}: PATCH changes only 'enabled' (PUT replaces a rule)",
        )
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise HttpError(400, ErrorCode.INVALID_FIELD, "'enabled' must be true or false")
    updated = await from_store(
        notify.outbox.update_rule(rule_id, notify.clock(), owner=who.scope, enabled=enabled)
    )
    if updated is None:
        raise _no_rule(rule_id)
    notify.rules_changed()
    return json_response({"success": True, "rule": rule_data(updated)})


async def delete_rule(request: web.Request) -> web.Response:
    who = caller(request, write=True)
    notify = request.app[NOTIFY_KEY]
    rule_id = _path_id(request, "rule", RULE_ID_LENGTH)
    if not await from_store(notify.outbox.delete_rule(rule_id, owner=who.scope)):
        raise _no_rule(rule_id)
    notify.rules_changed()
    return json_response({"success": True, "deleted": rule_id})


async def list_deliveries(request: web.Request) -> web.Response:
    who = caller(request)
    owner = listed_owner(request, who)
    state = _state(request.query.get("state") or None)
    limit = page_limit(request)
    page = await from_store(
        request.app[NOTIFY_KEY].outbox.list(
            state=state, owner=owner, limit=limit, before=request.query.get("before") or None
        )
    )
    return json_response(
        {
            "success": True,
            "deliveries": [d.data() for d in page.items],
            "next_before": page.next_before,
        }
    )


def _state(value: str | None) -> DeliveryState | None:
    if value is None:
        return None
    try:
        return DeliveryState(value)
    except ValueError:
        states = ", ".join(s.value for s in DeliveryState)
        raise HttpError(400, ErrorCode.INVALID_FIELD, f"'state' must be one of {states}") from None


async def get_delivery(request: web.Request) -> web.Response:
    who = caller(request)
    delivery_id = _path_id(request, "delivery", ID_LENGTH)
    delivery = await from_store(request.app[NOTIFY_KEY].outbox.get(delivery_id, owner=who.scope))
    if delivery is None:
        raise _no_delivery(delivery_id)
    return json_response({"success": True, "delivery": delivery.data()})


async def retry_delivery(request: web.Request) -> web.Response:
    who = caller(request, write=True)
    notify = request.app[NOTIFY_KEY]
    delivery_id = _path_id(request, "delivery", ID_LENGTH)
    retried = await from_store(notify.outbox.retry(delivery_id, notify.clock(), owner=who.scope))
    if retried is None:
        # Only a dead one is put back; which answer is due depends on whether it exists.
        current = await from_store(notify.outbox.get(delivery_id, owner=who.scope))
        if current is None:
            raise _no_delivery(delivery_id)
        raise HttpError(
            409,
            CONFLICT,
            f"delivery {delivery_id!r} is {current.state.value}: only a dead one can be retried",
        )
    notify.deliveries_changed()
    return json_response({"success": True, "delivery": retried.data()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/notify/config", get_config)
    app.router.add_get("/notify/rules", list_rules)
    app.router.add_post("/notify/rules", create_rule)
    app.router.add_get("/notify/rules/{id}", get_rule)
    app.router.add_put("/notify/rules/{id}", replace_rule)
    app.router.add_patch("/notify/rules/{id}", patch_rule)
    app.router.add_delete("/notify/rules/{id}", delete_rule)
    app.router.add_get("/notify/deliveries", list_deliveries)
    app.router.add_get("/notify/deliveries/{id}", get_delivery)
    app.router.add_post("/notify/deliveries/{id}/retry", retry_delivery)
