"""The specs as validators: every message a test sees from a real server must match them.

``docs/asyncapi.yaml`` (the WebSocket protocol) and ``slurmcast/specs/openapi.json``
(the HTTP API) hold JSON Schemas; this module compiles them once and checks
messages against them, so that neither document can drift from the code.
``support.server`` calls it on every frame ``Client`` receives and on every
``http_json`` answer.

Both are validated with jsonschema's Draft 2020-12 validator: OpenAPI 3.1
schemas are Draft 2020-12; the AsyncAPI document uses AsyncAPI's default
schema format (a superset of Draft 07) restricted to the keywords that mean the
same in both drafts (see the comment at its top).

* A WebSocket message is matched to its schema by ``type``: the messages of the
  AsyncAPI operations whose action is ``send`` name their type with ``const``
  (channel messages pin their ``channel`` too). A type none of them names must
  be an operator's broadcast with its own type (the one message without a
  ``const`` type), so an undocumented reply or event fails.
* An HTTP answer is matched by path template, method and status to the
  OpenAPI response's ``application/json`` schema; an undocumented status fails.
  A path or method the API does not have must answer the one error shape.

A mismatch raises ``SchemaMismatch`` (an ``AssertionError``) naming the
message, the schema and the failing path within both.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from slurmcast.http.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_PATH = ROOT / "docs" / "asyncapi.yaml"
ASYNCAPI_URI = "urn:slurmcast:asyncapi"
OPENAPI_URI = "urn:slurmcast:openapi"
#: How much of a failing message the error quotes.
QUOTE = 600


class SchemaMismatch(AssertionError):
    """A message from the server does not match its spec."""


def load_asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ASYNCAPI_PATH.read_text(encoding="utf-8"))
    return document


def _quote(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= QUOTE else text[:QUOTE] + "..."


def _explain(error: ValidationError) -> str:
    """Where the instance and the schema part ways, in one line."""
    schema_path = "/".join(str(part) for part in error.absolute_schema_path)
    return f"at {error.json_path}: {error.message} (schema path: {schema_path})"


def _first_error(validator: Draft202012Validator, instance: Any) -> ValidationError | None:
    errors: Iterator[ValidationError] = validator.iter_errors(instance)
    found: ValidationError | None = best_match(errors)
    return found


def _resolve(document: Mapping[str, Any], node: Any) -> Any:
    """Follow local ``$ref``s (``#/a/b``) until a node without one."""
    while isinstance(node, Mapping) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are followed: {ref}"
        node = document
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _type_const(schema: Mapping[str, Any]) -> str | None:
    """The ``const`` a message schema gives ``type``, looking through ``allOf``."""
    prop = schema.get("properties", {}).get("type", {})
    if isinstance(prop, Mapping) and isinstance(prop.get("const"), str):
        return str(prop["const"])
    for part in schema.get("allOf", []):
        found = _type_const(part)
        if found is not None:
            return found
    return None


class MessageSchemas:
    """The WebSocket messages the server sends, by ``type``, from the AsyncAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._registry: Registry[Any] = Registry().with_resource(
            ASYNCAPI_URI, DRAFT202012.create_resource(document)
        )
        #: type -> (message name and its payload schema, validator)
        self.by_type: dict[str, tuple[str, Draft202012Validator]] = {}
        self.fallback: tuple[str, Draft202012Validator] | None = None
        messages = document["components"]["messages"]
        for operation in document["operations"].values():
            if operation["action"] != "send":
                continue
            for reference in operation["messages"]:
                message_ref = _resolve(document, reference)
                key = next(key for key, value in messages.items() if value is message_ref)
                payload_ref = message_ref["payload"]["$ref"]
                name = f"{key} (payload {payload_ref.removeprefix('#/')})"
                schema = _resolve(document, message_ref["payload"])
                validator = self._validator(payload_ref)
                kind = _type_const(schema)
                if kind is None:
                    assert self.fallback is None or self.fallback[0] == name, (
                        "only one message may leave its type open"
                    )
                    self.fallback = (name, validator)
                else:
                    self.by_type[kind] = (name, validator)

    def _validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"{ASYNCAPI_URI}{pointer}"}, registry=self._registry)

    def check(self, message: Any, *, where: str = "server message") -> None:
        """Raise ``SchemaMismatch`` unless ``message`` matches its documented schema."""
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise SchemaMismatch(
                f"{where} has no string 'type', so no documented shape: {_quote(message)}"
            )
        kind = message["type"]
        found = self.by_type.get(kind)
        if found is None:
            if self.fallback is None:
                raise SchemaMismatch(f"{where} has an undocumented type {kind!r}")
            name, validator = self.fallback
            error = _first_error(validator, message)
            if error is not None:
                raise SchemaMismatch(
                    f"{where} of type {kind!r} is no documented message type "
                    f"({', '.join(sorted(self.by_type))}) and does not match "
                    f"components/messages/{name} (an operator broadcast of its own type) "
                    f"of {ASYNCAPI_PATH.name}: {_explain(error)}\nmessage: {_quote(message)}"
                )
            return
        name, validator = found
        if kind == "history":
            # Each stored publication on its own first: a clearer error than the oneOf's.
            for index, publication in enumerate(message.get("publications") or []):
                self.check(publication, where=f"{where} (history publications[{index}])")
        error = _first_error(validator, message)
        if error is not None:
            raise SchemaMismatch(
                f"{where} of type {kind!r} does not match components/messages/{name} of "
                f"{ASYNCAPI_PATH.name}: {_explain(error)}\nmessage: {_quote(message)}"
            )


class ResponseSchemas:
    """The HTTP API's JSON answers, by path, method and status, from the OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._registry: Registry[Any] = Registry().with_resource(
            OPENAPI_URI, DRAFT202012.create_resource(document)
        )
        self._routes: list[tuple[re.Pattern[str], str]] = []
        for template in document["paths"]:
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            self._routes.append((re.compile(pattern), template))
        self.error = self._validator("#/components/schemas/Error")

    def _validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"{OPENAPI_URI}{pointer}"}, registry=self._registry)

    def template(self, path: str) -> str | None:
        """The documented path template ``path`` falls under, if any."""
        path = path.split("?", 1)[0]
        for pattern, template in self._routes:
            if pattern.fullmatch(path):
                return template
        return None

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        """Raise ``SchemaMismatch`` unless ``body`` is the documented answer."""
        where = f"{method.upper()} {path[:200]} answered {status}"
        template = self.template(path)
        operation = (
            self.document["paths"][template].get(method.lower()) if template is not None else None
        )
        if template is None or operation is None:
            # No such route: whatever answers it must be the one error shape.
            if status < 400:
                raise SchemaMismatch(f"{where}, but the OpenAPI document has no such operation")
            error = _first_error(self.error, body)
            if error is not None:
                raise SchemaMismatch(
                    f"{where} (an undocumented route) without the error shape "
                    f"components/schemas/Error: {_explain(error)}\nbody: {_quote(body)}"
                )
            return
        responses = operation["responses"]
        key = str(status) if str(status) in responses else "default"
        if key not in responses:
            raise SchemaMismatch(
                f"{where}: status {status} is not documented for {method.upper()} {template} "
                f"(documented: {', '.join(responses)})\nbody: {_quote(body)}"
            )
        response = responses[key]
        pointer = f"#/paths/{template.replace('~', '~0').replace('/', '~1')}"
        pointer += f"/{method.lower()}/responses/{key}"
        if "$ref" in response:
            pointer = response["$ref"]
            response = _resolve(self.document, response)
        content = response.get("content", {})
        if "application/json" not in content:
            raise SchemaMismatch(
                f"{where}: {method.upper()} {template} documents no JSON answer for {key}"
            )
        validator = self._validator(f"{pointer}/content/application~1json/schema")
        error = _first_error(validator, body)
        if error is not None:
            raise SchemaMismatch(
                f"{where} does not match the OpenAPI response {method.upper()} {template} "
                f"{key} ({pointer}): {_explain(error)}\nbody: {_quote(body)}"
            )


@functools.cache
def message_schemas() -> MessageSchemas:
    return MessageSchemas(load_asyncapi())


@functools.cache
def response_schemas() -> ResponseSchemas:
    return ResponseSchemas(openapi_document())


def check_server_message(message: Any) -> None:
    """Raise ``SchemaMismatch`` unless a WebSocket message matches docs/asyncapi.yaml."""
    message_schemas().check(message)


def check_http_response(method: str, path: str, status: int, body: Any) -> None:
    """Raise ``SchemaMismatch`` unless an HTTP JSON answer matches the OpenAPI document."""
    response_schemas().check(method, path, status, body)
