"""JSON payloads: what survives a round trip through JSON, and where the rest is named."""

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from django_quickworker.exceptions import InvalidJobData
from django_quickworker.payload import validate_payload


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**70),
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
