"""JSON payloads: job data, results and messages must survive a round trip through JSON."""

import math
from typing import Any

from django_quickworker.exceptions import InvalidJobData

# Integers must fit in 64 bits: MySQL's JSON type and SQLite's JSON functions (behind
# lookups such as data__count) hold larger ones as floats, which lose digits; and Python's
# json refuses to write integers of more than 4,300 digits at all.
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1
# Deeper values are surely a mistake (a structure that refers to itself through copies),
# and json.loads raises RecursionError on the way back in at around a thousand levels.
MAX_DEPTH = 100


def validate_payload(value: Any, path: str, depth: int = 0) -> None:
    """Raise InvalidJobData naming the first part of ``value`` that JSON would not return intact.

    ``path`` names the value in the message, e.g. ``data`` gives ``data['items'][2]``.
    """
    if depth > MAX_DEPTH:
        raise InvalidJobData(
            f"{_shorten(path)} is nested more than {MAX_DEPTH} levels deep; flatten the data."
        )
    if isinstance(value, str):
        if not is_storable_text(value):
            raise InvalidJobData(
                f"{path} holds a NUL character or a lone surrogate: {_shorten(repr(value))}."
            )
        return
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise InvalidJobData(
                # Not str(value): Python refuses to write integers of over 4,300 digits.
                f"{path} is an integer of {value.bit_length()} bits, outside the 64-bit range "
                f"databases store in JSON ({MIN_INT} to {MAX_INT}); send it as a string."
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidJobData(
                f"{path} is {value!r}, which JSON cannot carry; use a finite number."
            )
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            validate_payload(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not is_storable_text(key):
                raise InvalidJobData(
                    f"{path} has the key {key!r}; JSON object keys must be strings "
                    "without NUL characters or lone surrogates."
                )
            validate_payload(item, f"{path}[{key!r}]", depth + 1)
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
