"""The task interface: what enqueueing refuses before any job row is written."""

import math

import pytest

from app.tasks import Task


def takes_a_value(value: object) -> None:
    """A unit of work's signature: one argument named `value`."""


UNIT = Task(name="tests.takes_a_value", fn=takes_a_value)


def test_json_arguments_the_function_takes_are_accepted() -> None:
    UNIT.check_arguments({"value": {"ids": [1, 2], "note": "ok", "ratio": 0.5}})


@pytest.mark.parametrize("value", [math.nan, math.inf, object(), {1, 2}])
def test_arguments_json_cannot_carry_are_refused(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        UNIT.check_arguments({"value": value})


def test_arguments_the_function_does_not_take_are_refused() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'other'"):
        UNIT.check_arguments({"value": 1, "other": 2})
