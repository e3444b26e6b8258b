"""Hostile variants of a valid JSON body: one string poisoned, one key added, or one value nested."""

import copy
import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from app.core.validation import MAX_JSON_DEPTH

# Bounded: the suite runs in every rendered combination. Each example is a real request
# and, when accepted, a real job.
HOSTILE = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Characters some layer cannot carry (NUL, lone surrogates), breaks a line (C0/C1 controls,
# U+2028/9), or that are merely unusual (BOM, the last code point, an emoji, Unicode text).
POISONS = [
    "\x00",
    "\ud800",
    "\udfff",
    "\r\n",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\U0010ffff",
    "🎉",
    "ß李",
]

Location = tuple[str | int, ...]


def locations(value: Any, here: Location = ()) -> list[Location]:
    """Every place in a (shallow, valid) body: the body itself and each value inside it."""
    found = [here]
    if isinstance(value, dict):
        for key, item in value.items():
            found += locations(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += locations(item, (*here, index))
    return found


def replaced(body: Any, location: Location, value: Any) -> Any:
    if not location:
        return value
    copied = copy.deepcopy(body)
    parent = copied
    for part in location[:-1]:
        parent = parent[part]
    parent[location[-1]] = value
    return copied


def nested(depth: int, leaf: Any) -> Any:
    """`depth` objects and arrays inside each other, alternating, around `leaf`."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@st.composite
def hostile(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A valid body with one string poisoned, one key added, or one value nested deep."""
    body = draw(valid)
    places = locations(body)
    kind = draw(st.sampled_from(["poison", "key", "deep"]))
    poison = draw(st.sampled_from(POISONS))
    if kind == "poison":
        strings = [place for place in places if isinstance(_at(body, place), str)]
        place = draw(st.sampled_from(strings))
        text: str = _at(body, place)
        cut = draw(st.integers(0, len(text)))
        return replaced(body, place, text[:cut] + poison + text[cut:])
    if kind == "key":
        objects = [place for place in places if isinstance(_at(body, place), dict)]
        place = draw(st.sampled_from(objects))
        return replaced(body, place, {**_at(body, place), f"x{poison}": 1})
    place = draw(st.sampled_from(places[1:] or places))
    depth = draw(st.integers(1, 3 * MAX_JSON_DEPTH))
    return replaced(body, place, nested(depth, _at(body, place)))


def _at(body: Any, location: Location) -> Any:
    for part in location:
        body = body[part]
    return body


def post_json(client: TestClient, url: str, body: Any, method: str = "POST") -> Any:
    """Send `body` as a client may: lone surrogates as `\\ud800` escapes (json= refuses them)."""
    return client.request(
        method, url, content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
