"""Helpers shared by the Slurm parsers: JSON documents and delimited lines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import orjson

from slurmcast.errors import SourceError
from slurmcast.gcpause import gc_paused

__all__ = [
    "UnknownShapeError",
    "decode_text",
    "document_release",
    "each_record",
    "gc_paused",
    "load_json_document",
    "load_json_list",
    "shape_error",
    "split_fields",
]


class UnknownShapeError(SourceError):
    """A JSON document valid as JSON but not shaped as any Slurm release this parser knows.

    Retrying will not help: the message names the command, the Slurm release
    the document says it comes from, and the key that was expected.
    """


def load_json_document(raw: bytes | str, command: str) -> dict[str, Any]:
    """Decode a Slurm ``--json`` document (or a slurmrestd reply) and check its ``errors``.

    Args:
        raw: the command's stdout.
        command: the command's name, for error messages.

    Returns:
        The document.

    Raises:
        SourceError: invalid JSON, not an object, or Slurm ``errors``
            present (the listing may be partial).
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SourceError(f"{command}: invalid JSON output ({exc})") from None
    if not isinstance(document, dict):
        raise SourceError(f"{command}: expected a JSON object, got {type(document).__name__}")
    errors = document.get("errors")
    if errors:
        raise SourceError(f"{command}: Slurm reported errors: {_summarise(errors)}")
    return document


def load_json_list(raw: bytes | str, key: str, command: str) -> list[Any]:
    """Decode a Slurm ``--json`` document and return its ``key`` list.

    Args:
        raw: the command's stdout.
        key: the list to return (``jobs``, ``nodes``).
        command: the command's name, for error messages.

    Returns:
        The list (its items are not checked).

    Raises:
        SourceError: as :func:`load_json_document`.
        UnknownShapeError: no ``key`` list.
    """
    document = load_json_document(raw, command)
    items = document.get(key)
    if not isinstance(items, list):
        raise shape_error(document, command, repr(key))
    return items


_T = TypeVar("_T")


def each_record(
    items: list[Any], parse: Callable[[Any], _T], command: str, what: str
) -> Iterator[_T]:
    """``parse`` applied to every item of a JSON list, a failure naming the item.

    Raises:
        SourceError: ``parse`` failed, or the item is not shaped as it expects
            (``"squeue --json: job #3: malformed record (KeyError: 'x')"``).
    """
    for index, item in enumerate(items):
        try:
            yield parse(item)
        except SourceError as exc:
            raise SourceError(f"{command}: {what} #{index}: {exc.message}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SourceError(
                f"{command}: {what} #{index}: malformed record ({type(exc).__name__}: {exc})"
            ) from None


def shape_error(document: dict[str, Any], command: str, expected: str) -> UnknownShapeError:
    """The error for a document without the ``expected`` key(s)."""
    release = document_release(document) or "of an unknown release"
    keys = ", ".join(sorted(str(key) for key in document)[:8]) or "none"
    return UnknownShapeError(
        f"{command}: the JSON output of Slurm {release} has no {expected} list "
        f"(top-level keys: {keys})"
    )


def document_release(document: dict[str, Any]) -> str | None:
    """The Slurm release a JSON document says it comes from (``meta.slurm.release``).

    22.05-23.02 spell the key ``Slurm``, 23.11 and later ``slurm``.
    """
    meta = document.get("meta")
    if not isinstance(meta, dict):
        return None
    for key in ("slurm", "Slurm"):
        info = meta.get(key)
        if isinstance(info, dict):
            release = info.get("release")
            if isinstance(release, str) and release:
                return release
            version = info.get("version")
            if isinstance(version, dict) and "major" in version:
                return ".".join(str(version.get(part, "?")) for part in ("major", "minor", "micro"))
    return None


def _summarise(errors: object) -> str:
    if not isinstance(errors, list):
        return repr(errors)[:200]
    texts: list[str] = []
    for error in errors[:3]:
        if isinstance(error, dict):
            text = error.get("error") or error.get("description") or error
            number = error.get("error_number", error.get("errno"))
            texts.append(f"{text} ({number})" if number is not None else str(text))
        else:
            texts.append(str(error))
    more = f" and {len(errors) - 3} more" if len(errors) > 3 else ""
    return "; ".join(texts)[:300] + more


def decode_text(raw: bytes | str, command: str) -> str:
    """Decode a text tool's stdout.

    Args:
        raw: stdout bytes (UTF-8; invalid bytes are replaced, as job names
            are arbitrary user bytes) or already-decoded text.
        command: the command's name, for error messages.

    Returns:
        The text.

    Raises:
        SourceError: the output contains NUL bytes (not text at all).
    """
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
    if "\x00" in text:
        raise SourceError(f"{command}: output contains NUL bytes")
    return text


def split_fields(line: str, delimiter: str, count: int, command: str, line_no: int) -> list[str]:
    """Split one delimited line into exactly ``count`` fields.

    The last field may itself contain the delimiter (it is the free-text
    field by design), so the split stops after ``count - 1`` delimiters.

    Args:
        line: the line without its newline.
        delimiter: the field separator.
        count: the expected number of fields.
        command: the command's name, for error messages.
        line_no: 1-based line number, for error messages.

    Returns:
        The fields.

    Raises:
        SourceError: fewer than ``count`` fields.
    """
    fields = line.split(delimiter, count - 1)
    if len(fields) != count:
        raise SourceError(
            f"{command}: line {line_no} has {len(fields)} fields, expected {count}: {line[:120]!r}"
        )
    return fields
