"""API keys: every route declares who may call it, and each scope answers 401, 403 or passes."""

import hmac
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from app.core import security
from app.core.config import get_security_settings
from app.core.security import Access, ClientScope, OpsScope, Public, route_access
from app.main import create_app
from tests.conftest import Keys
from tests.sample_work import create_sample_app

UNKNOWN_KEY = "x" * 32
# Every client or ops route passes its key check with a key; `{id}` takes this value.
PATH_PARAMETER = re.compile(r"{[^}]+}")


def undeclared(app: FastAPI) -> list[str]:
    return [
        f"{' '.join(route.methods)} {route.path}"
        for route in route_access(app)
        if route.access is None
    ]


def test_every_route_declares_who_may_call_it() -> None:
    """A route of yours, or of a scenario added later, fails here until it declares access.

    Declare it on the router or the route: `dependencies=[ClientScope]` (any API key),
    `[OpsScope]` (an operator key) or `[Public]` (anyone; it must say nothing private).
    See "Securing a route" in the README.
    """
    app = create_app()

    assert undeclared(app) == []
    assert {route.path: route.access for route in route_access(app)}["/health"] is Access.PUBLIC


def test_the_check_catches_a_route_without_a_decision() -> None:
    app = create_app()
    router = APIRouter()

    @router.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    @router.get("/declared", dependencies=[OpsScope])
    async def declared() -> dict[str, str]:
        return {}

    app.include_router(router)

    assert undeclared(app) == ["GET /forgotten"]


def test_a_route_without_a_decision_needs_a_client_key(keys: Keys) -> None:
    """Defence in depth: forgetting the declaration closes a route instead of opening it."""
    app = create_sample_app()

    @app.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"private": "data"}

    with TestClient(app) as client:
        anonymous = client.get("/forgotten")
        with_key = client.get("/forgotten", headers=keys.auth(keys.client))

    assert anonymous.status_code == 401
    assert with_key.status_code == 200


def requests_for(app: FastAPI, access: Access) -> list[tuple[str, str]]:
    """(method, URL) of every route of `app` declaring `access`, path parameters filled in."""
    return [
        (method, PATH_PARAMETER.sub("1", route.path))
        for route in route_access(app)
        if route.access is access
        for method in route.methods
    ]


def answers_200(method: str, url: str, app: FastAPI) -> bool:
    """A GET whose path has no parameter: with the right key, its answer is a plain 200."""
    templates = {route.path for route in route_access(app) if "{" not in route.path}
    return method == "GET" and url in templates


@pytest.fixture
def keyed_app(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The app with keys configured, /metrics behind an ops key."""
    monkeypatch.setenv("METRICS_REQUIRE_KEY", "true")
    get_security_settings.cache_clear()
    return create_app()


def test_client_routes_answer_401_403_or_pass_by_key(keyed_app: FastAPI, keys: Keys) -> None:
    routes = requests_for(keyed_app, Access.CLIENT)
    assert routes, "every project has client routes (GET /jobs/{job_id})"

    with TestClient(keyed_app) as client:
        for method, url in routes:
            missing = client.request(method, url)
            unknown = client.request(method, url, headers=keys.auth(UNKNOWN_KEY))
            client_key = client.request(method, url, headers=keys.auth(keys.client))
            ops_key = client.request(method, url, headers=keys.auth(keys.ops))

            where = f"{method} {url}"
            assert missing.status_code == 401, where
            assert missing.headers["WWW-Authenticate"] == "Bearer", where
            assert unknown.status_code == 401, where
            assert unknown.headers["WWW-Authenticate"].startswith("Bearer"), where
            # Past the key check: the route's own answer (200, or 404/422 for a made-up id).
            assert client_key.status_code not in (401, 403), where
            assert ops_key.status_code not in (401, 403), where
            if answers_200(method, url, keyed_app):
                assert client_key.status_code == 200, where


def test_ops_routes_answer_401_to_strangers_and_403_to_client_keys(
    keyed_app: FastAPI, keys: Keys
) -> None:
    routes = requests_for(keyed_app, Access.OPS)
    assert ("GET", "/metrics") in routes

    with TestClient(keyed_app) as client:
        for method, url in routes:
            missing = client.request(method, url)
            client_key = client.request(method, url, headers=keys.auth(keys.client))
            ops_key = client.request(method, url, headers=keys.auth(keys.ops))

            where = f"{method} {url}"
            assert missing.status_code == 401, where
            assert missing.headers["WWW-Authenticate"] == "Bearer", where
            assert client_key.status_code == 403, where
            assert "insufficient_scope" in client_key.headers["WWW-Authenticate"], where
            assert ops_key.status_code not in (401, 403), where
            if answers_200(method, url, keyed_app):
                assert ops_key.status_code == 200, where


def test_public_routes_answer_without_a_key(keyed_app: FastAPI) -> None:
    routes = requests_for(keyed_app, Access.PUBLIC)
    assert ("GET", "/health") in routes

    with TestClient(keyed_app) as client:
        for method, url in routes:
            assert client.request(method, url).status_code == 200, f"{method} {url}"


def test_health_says_nothing_private(keyed_app: FastAPI) -> None:
    with TestClient(keyed_app) as client:
        health = client.get("/health").json()

    assert set(health) == {"status", "components", "reasons"}
    assert set(health["components"].values()) <= {"ok", "down", "behind"}
    assert health["reasons"] == {}  # a reason says what an operator runs, never a secret


def test_metrics_are_open_to_the_scraper_unless_they_require_a_key(keys: Keys) -> None:
    with TestClient(create_app()) as client:
        scraped = client.get("/metrics")

    assert get_security_settings().metrics_require_key is False
    assert scraped.status_code == 200


def test_a_key_in_another_scheme_or_without_scheme_is_refused(keys: Keys) -> None:
    with TestClient(create_app()) as client:
        for authorization in (keys.client, f"Basic {keys.client}", "Bearer ", "Bearer"):
            response = client.get("/jobs/1", headers={"Authorization": authorization})
            assert response.status_code == 401, authorization


def test_the_scheme_name_is_case_insensitive(keys: Keys) -> None:
    with TestClient(create_app()) as client:
        response = client.get("/metrics", headers={"Authorization": f"bearer {keys.ops}"})

    assert response.status_code == 200


def test_every_key_is_compared_whichever_matches(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No early exit: how long a check takes does not tell which key, or how many, matched."""
    monkeypatch.setenv("API_KEYS", ",".join(["a" * 20, keys.client, "b" * 20]))
    get_security_settings.cache_clear()
    compared: list[int] = []
    original = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        compared.append(len(a))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    keyring = security.keyring()

    for key in (keys.client, keys.ops, UNKNOWN_KEY):
        compared.clear()
        keyring.access_of(key)
        assert len(compared) == 4  # three client keys and one ops key
        assert set(compared) == {32}  # digests: the key's length is not compared either


def test_ops_keys_and_client_keys_have_their_scopes(keys: Keys) -> None:
    keyring = security.keyring()

    assert keyring.access_of(keys.client) is Access.CLIENT
    assert keyring.access_of(keys.ops) is Access.OPS
    assert keyring.access_of(UNKNOWN_KEY) is None


def test_keys_never_reach_logs_or_responses(
    keyed_app: FastAPI,
    keys: Keys,
    caplog: pytest.LogCaptureFixture,
    service_log: Callable[[], str],
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with TestClient(keyed_app, raise_server_exceptions=False) as client:
        for key in (keys.client, keys.ops, UNKNOWN_KEY):
            for method, url in [
                ("GET", "/jobs/00000000-0000-0000-0000-000000000000"),  # 404
                ("GET", "/jobs/not-an-id"),  # 422
                ("GET", "/metrics"),  # 200 or 403
            ]:
                response = client.request(method, url, headers=keys.auth(key))
                texts += [response.text, str(response.headers)]

    logged = service_log() + "".join(str(record.__dict__) for record in caplog.records)
    for key in (keys.client, keys.ops, UNKNOWN_KEY):
        assert key not in logged
        assert not [text for text in texts if key in text]


def test_openapi_declares_the_bearer_scheme_and_each_operation_its_scope() -> None:
    with TestClient(create_app()) as client:
        document = client.get("/openapi.json").json()

    assert document["components"]["securitySchemes"]["APIKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": security.require_client_key.model.description,
    }
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert "security" not in operations[("GET", "/health")]
    assert operations[("GET", "/jobs/{job_id}")]["security"] == [{"APIKey": ["client"]}]


def test_development_without_keys_is_open_and_warns_once_at_start_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with TestClient(create_app()) as client:
        warnings = [
            record.getMessage()
            for record in caplog.records
            if record.levelno == logging.WARNING and record.name == security.__name__
        ]
        ops_route = client.get("/metrics")

    assert get_security_settings().environment == "development"
    assert len(warnings) == 1
    assert "every endpoint is open" in warnings[0]
    assert ops_route.status_code == 200


def test_with_keys_start_up_warns_about_nothing(
    keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app()):
        pass

    assert not [r for r in caplog.records if r.name == security.__name__]


def test_production_hides_the_docs_unless_asked(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    get_security_settings.cache_clear()
    with TestClient(create_app()) as client:
        hidden = [client.get(path).status_code for path in ("/docs", "/redoc", "/openapi.json")]
    monkeypatch.setenv("DOCS_IN_PRODUCTION", "true")
    get_security_settings.cache_clear()
    with TestClient(create_app()) as client:
        shown = [client.get(path).status_code for path in ("/docs", "/redoc", "/openapi.json")]

    assert hidden == [404, 404, 404]
    assert shown == [200, 200, 200]


@pytest.mark.parametrize(
    ("variables", "missing"),
    [
        ({}, "API_KEYS and OPS_API_KEYS"),
        ({"API_KEYS": "c" * 24}, "OPS_API_KEYS"),
        ({"OPS_API_KEYS": "o" * 24}, "API_KEYS"),
    ],
)
def test_production_refuses_to_start_without_keys_in_one_line(
    tmp_path: Path, variables: dict[str, str], missing: str
) -> None:
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "API_KEYS": "",
        "OPS_API_KEYS": "",
        **variables,
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
    }
    server = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert server.returncode != 0
    [line] = server.stderr.strip().splitlines()
    assert line.startswith(
        f"invalid configuration: ENVIRONMENT=production requires API keys: set {missing} "
    )
    assert "secrets.token_urlsafe" in line  # how to make one


@pytest.mark.parametrize(
    "bad_key", ["short", "has spaces in it and is long", "naïve-but-long-enough"]
)
def test_a_malformed_key_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, bad_key: str
) -> None:
    monkeypatch.setenv("API_KEYS", f"{'k' * 20},{bad_key}")
    get_security_settings.cache_clear()

    with pytest.raises(SystemExit) as stopped:
        create_app()

    message = str(stopped.value)
    assert message.startswith("invalid configuration: API_KEYS: ")
    assert bad_key not in message
    assert "k" * 20 not in message


def test_a_key_in_both_lists_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "s" * 20)
    monkeypatch.setenv("OPS_API_KEYS", "s" * 20)
    get_security_settings.cache_clear()

    with pytest.raises(SystemExit, match="listed in both API_KEYS and OPS_API_KEYS"):
        create_app()


def test_scopes_can_be_declared_on_a_router_or_a_route(keys: Keys) -> None:
    app = create_sample_app()
    router = APIRouter(prefix="/mine", dependencies=[ClientScope])

    @router.get("/data")
    async def data() -> dict[str, str]:
        return {}

    @router.post("/admin", dependencies=[OpsScope])
    async def admin() -> dict[str, str]:
        return {}

    @app.get("/open", dependencies=[Public])
    async def open_route() -> dict[str, str]:
        return {}

    app.include_router(router)
    table = {route.path: route.access for route in route_access(app)}
    with TestClient(app) as client:
        statuses = [
            client.get("/mine/data", headers=keys.auth(keys.client)).status_code,
            client.post("/mine/admin", headers=keys.auth(keys.client)).status_code,
            client.post("/mine/admin", headers=keys.auth(keys.ops)).status_code,
            client.get("/open").status_code,
        ]

    assert (table["/mine/data"], table["/mine/admin"], table["/open"]) == (
        Access.CLIENT,
        Access.OPS,
        Access.PUBLIC,
    )
    assert statuses == [200, 403, 200, 200]
