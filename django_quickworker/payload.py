"""JSON payloads: job data, results and messages must survive a round trip through JSON."""

import math
from typing import Any

from django_quickworker.exceptions import InvalidJobData


def validate_payload(value: Any, path: str) -> None:
    """Raise InvalidJobData naming the first part of ``value`` that JSON would not return intact.

    ``path`` names the value in the message, e.g. ``data`` gives ``data['items'][2]``.
    """
    if isinstance(value, str):
        if not is_storable_text(value):
            raise InvalidJobData(
                f"{path} holds a NUL character or a lone surrogate: {_shorten(repr(value))}."
            )
        return
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidJobData(
                f"{path} is {value!r}, which JSON cannot carry; use a finite number."
            )
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            validate_payload(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not is_storable_text(key):
                raise InvalidJobData(
                    f"{path} has the key {key!r}; JSON object keys must be strings "
                    "without NUL characters or lone surrogates."
                )
            validate_payload(item, f"{path}[{key!r}]")
        return
    raise InvalidJobData(
        f"{path} is {type(value).__name__} {_shorten(repr(value))}, which does not survive JSON; "
        "use str, int, float, bool, None, list or dict (ids, not objects)."
    )


def is_storable_text(text: str) -> bool:
    """Whether every database can store ``text``: PostgreSQL refuses NUL and invalid UTF-8."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def storable_text(text: str) -> str:
    """``text`` with what a database cannot store (NUL, lone surrogates) spelled out."""
    if is_storable_text(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
