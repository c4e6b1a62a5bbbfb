"""JSON payloads: what survives a round trip through JSON, and where the rest is named."""

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from django_quickworker.exceptions import InvalidJobData
from django_quickworker.payload import MAX_DEPTH, validate_payload


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        2**63 - 1,
        1.5,
        "text ✓",
        [],
        {},
        {"a": [1, 2.5, None, {"b": [True, "x"]}], "c": {"d": {"e": []}}},
    ],
)
def test_json_values_are_accepted(value: Any) -> None:
    validate_payload(value, "data")

    assert json.loads(json.dumps(value)) == value


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({1, 2}, "data"),
        ((1, 2), "data"),
        (datetime(2026, 1, 1), "data"),
        (Decimal("1.5"), "data"),
        (b"bytes", "data"),
        (object(), "data"),
        (float("nan"), "data"),
        (float("-inf"), "data"),
        ({"a": [{"b": {1}}]}, "data['a'][0]['b']"),
        ([0, [1, (2,)]], "data[1][1]"),
        ({"a": {"b": float("inf")}}, "data['a']['b']"),
        ({"a": [{1: "x"}]}, "data['a'][0]"),
        (2**63, "data"),
        ({"n": -(2**63) - 1}, "data['n']"),
        ([10**5000], "data[0]"),  # too long even for str(): no ValueError from Python
    ],
)
def test_values_json_would_not_return_intact_are_refused_naming_the_path(
    value: Any, path: str
) -> None:
    with pytest.raises(InvalidJobData) as error:
        validate_payload(value, "data")

    assert isinstance(error.value, ValueError)
    assert str(error.value).startswith(f"{path} ")


def test_non_string_keys_are_named() -> None:
    with pytest.raises(InvalidJobData, match=r"data\['a'\] has the key 1;"):
        validate_payload({"a": {"ok": 1, 1: 2}}, "data")


def test_the_message_names_the_type_and_a_short_repr() -> None:
    with pytest.raises(InvalidJobData) as error:
        validate_payload({"when": datetime(2026, 1, 2, 3, 4)}, "result")

    message = str(error.value)
    assert message.startswith("result['when'] is datetime datetime.datetime(2026, 1, 2, 3, 4)")
    with pytest.raises(InvalidJobData) as long_error:
        validate_payload(b"x" * 500, "data")
    assert "..." in str(long_error.value)
    assert len(str(long_error.value)) < 250


def test_too_large_integers_are_refused_naming_the_limit() -> None:
    with pytest.raises(InvalidJobData) as error:
        validate_payload({"id": 2**64}, "data")

    assert str(error.value).startswith("data['id'] is an integer of 65 bits, outside the 64-bit")
    assert str(2**63 - 1) in str(error.value)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    value: Any = []
    for _ in range(MAX_DEPTH):
        value = [value]

    validate_payload(value, "data")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deeper_nesting_is_refused_without_recursion_error(depth: int) -> None:
    value: Any = {}
    for _ in range(depth):
        value = {"a": value}

    with pytest.raises(InvalidJobData, match=f"nested more than {MAX_DEPTH} levels deep"):
        validate_payload(value, "data")
