"""Helpers shared by the Slurm parsers: JSON documents and delimited lines."""

from __future__ import annotations

from typing import Any

import orjson

from slurmcast.errors import SourceError
from slurmcast.gcpause import gc_paused

__all__ = ["decode_text", "gc_paused", "load_json_list", "split_fields"]


def load_json_list(raw: bytes | str, key: str, command: str) -> list[Any]:
    """Decode a Slurm ``--json`` document and return its ``key`` list.

    Args:
        raw: the command's stdout.
        key: the list to return (``jobs``, ``nodes``).
        command: the command's name, for error messages.

    Returns:
        The list (its items are not checked).

    Raises:
        SourceError: invalid JSON, not an object, Slurm ``errors`` present
            (the listing may be partial), or no ``key`` list.
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
    items = document.get(key)
    if not isinstance(items, list):
        raise SourceError(f"{command}: JSON output has no {key!r} list")
    return items


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
