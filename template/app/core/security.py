"""API keys and the access every route declares: `ClientScope`, `OpsScope` or `Public`.

A route declares its access once, on its router or on itself:

    router = APIRouter(prefix="/reports", dependencies=[ClientScope])
    @router.post("/rebuild", dependencies=[OpsScope])

Keys arrive as `Authorization: Bearer <key>` and are compared in constant time; no key ever
reaches a log line, a record or a response. Missing or unknown: 401 with
`WWW-Authenticate: Bearer`; a client key where an ops key is needed: 403. An ops key works
wherever a client key does. With no key configured at all (development only: production
refuses to start), every route is open, and start-up says so in one warning line.
"""

import hashlib
import hmac
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypedDict

from fastapi import Depends, FastAPI, HTTPException, Request, Security, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import HTTPBearer

from app.core.config import SecuritySettings, get_security_settings, split_keys

logger = logging.getLogger(__name__)


class Access(StrEnum):
    """Who may call a route."""

    PUBLIC = "public"  # anyone: /health (and the docs, where they are served)
    CLIENT = "client"  # a key from API_KEYS or OPS_API_KEYS
    OPS = "ops"  # a key from OPS_API_KEYS


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the scope of their key, and an identity for rate limits."""

    access: Access | None  # None: the service runs without keys, so everyone is let in
    identity: str  # "key:<fingerprint>", or "address:<client address>" without keys


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class Keyring:
    """The configured keys, as digests: compared in constant time, whatever their lengths."""

    def __init__(self, settings: SecuritySettings) -> None:
        self.client = tuple(_digest(key.encode()) for key in split_keys(settings.api_keys))
        self.ops = tuple(_digest(key.encode()) for key in split_keys(settings.ops_api_keys))

    @property
    def open(self) -> bool:
        """No key is configured: the service lets everyone in (development only)."""
        return not (self.client or self.ops)

    def access_of(self, key: str) -> Access | None:
        """The scope of `key`, or None if it is unknown. Every configured key is compared."""
        digest = _digest(key.encode())
        is_ops = is_client = False
        for known in self.ops:
            is_ops |= hmac.compare_digest(digest, known)
        for known in self.client:
            is_client |= hmac.compare_digest(digest, known)
        if is_ops:
            return Access.OPS
        return Access.CLIENT if is_client else None

    @staticmethod
    def fingerprint(key: str) -> str:
        """A short, stable name for a key (rate-limit counters), from which it cannot be read."""
        return _digest(key.encode()).hex()[:16]


class _Keyrings:
    """One `Keyring` per settings object, rebuilt when the settings are reloaded."""

    def __init__(self) -> None:
        self._settings: SecuritySettings | None = None
        self._keyring: Keyring | None = None

    def current(self) -> Keyring:
        settings = get_security_settings()
        if settings is not self._settings or self._keyring is None:
            self._settings, self._keyring = settings, Keyring(settings)
        return self._keyring


keyring = _Keyrings().current


def bearer_token(request: Request) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge}
    )


def authenticate(request: Request) -> Caller:
    """The caller of `request` (kept on `request.state.caller`); 401 for a missing or unknown key."""
    known: Caller | None = getattr(request.state, "caller", None)
    if known is not None:
        return known
    keys = keyring()
    if keys.open:
        address = request.client.host if request.client else "unknown"
        caller = Caller(None, f"address:{address}")
    else:
        token = bearer_token(request)
        if token is None:
            raise unauthorized(
                "An API key is required: send the header Authorization: Bearer <key>"
            )
        access = keys.access_of(token)
        if access is None:
            raise unauthorized("Unknown API key", error="invalid_token")
        caller = Caller(access, f"key:{keys.fingerprint(token)}")
    request.state.caller = caller
    return caller


class ApiKey(HTTPBearer):
    """The key a route needs, read by `authenticate`: one dependency to solve per request.

    A subclass of FastAPI's `HTTPBearer`, so OpenAPI declares the scheme (the Authorize
    button of /docs) and each operation's scope from the very dependency that checks the
    key: a separate `HTTPBearer` dependency would cost every request one more to solve.
    """

    def __init__(self, need: Access) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="APIKey",
            description=(
                "An API key, sent as `Authorization: Bearer <key>`. Client keys (API_KEYS) "
                "call the feature endpoints; ops keys (OPS_API_KEYS) call those too, and the "
                "operator endpoints. Each operation lists the scope it needs."
            ),
        )
        self.need = need

    async def __call__(self, request: Request) -> Caller:  # type: ignore[override]
        caller = authenticate(request)
        if self.need is Access.OPS and caller.access is Access.CLIENT:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail="This endpoint needs an operator key (OPS_API_KEYS)",
                headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
            )
        return caller


class MetricsKey(ApiKey):
    """`/metrics`: an ops key when METRICS_REQUIRE_KEY=true, else open to the scraper."""

    async def __call__(self, request: Request) -> Caller | None:  # type: ignore[override]
        if get_security_settings().metrics_require_key:
            return await super().__call__(request)
        return None


# Any valid key: a client key or an ops key.
require_client_key = ApiKey(Access.CLIENT)
# An ops key; a client key gets 403.
require_ops_key = ApiKey(Access.OPS)
metrics_access = MetricsKey(Access.OPS)


async def public() -> None:
    """Declares a route open to anyone (it must say nothing private)."""


# What routes declare: `dependencies=[ClientScope]` on a router or a route.
ClientScope = Security(require_client_key, scopes=["client"])
OpsScope = Security(require_ops_key, scopes=["ops"])
Public = Depends(public)
MetricsScope = Security(metrics_access, scopes=["ops"])
# For an endpoint that wants to know its caller: `caller: ClientCaller`.
ClientCaller = Annotated[Caller, ClientScope]
OpsCaller = Annotated[Caller, OpsScope]

_DECLARATIONS: dict[Any, Access] = {
    public: Access.PUBLIC,
    require_client_key: Access.CLIENT,
    require_ops_key: Access.OPS,
    metrics_access: Access.OPS,
}


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def declared_access(dependant: Dependant) -> Access | None:
    """The access a route's dependencies declare (the strictest, if several), or None."""
    declared = {_DECLARATIONS[call] for call in _calls(dependant) if call in _DECLARATIONS}
    for access in (Access.OPS, Access.CLIENT, Access.PUBLIC):
        if access in declared:
            return access
    return None


async def client_key_unless_declared(request: Request) -> None:
    """Every route of the app depends on this: one that declares no access needs a client key.

    So a route added without a decision is closed, not open; the generated tests fail on it
    too (`tests/core/test_security.py`), until it declares `ClientScope`, `OpsScope` or `Public`.
    """
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and declared_access(route.dependant) is None:
        authenticate(request)


DefaultAccess = Depends(client_key_unless_declared)


@dataclass(frozen=True)
class RouteAccess:
    methods: tuple[str, ...]
    path: str
    access: Access | None  # None: the route declares nothing


def route_access(app: FastAPI) -> list[RouteAccess]:
    """Every route of `app` and the access it declares; the docs' own routes are public."""
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    table = []
    for route in iter_route_contexts(app.routes):
        dependant: Dependant | None = getattr(route, "dependant", None)
        if dependant is not None:
            access = declared_access(dependant)
        else:
            access = Access.PUBLIC if route.path in docs - {None} else None
        methods = tuple(sorted((route.methods or set()) - {"HEAD"}))
        table.append(RouteAccess(methods, route.path or "", access))
    return table


class DocsUrls(TypedDict):
    openapi_url: str | None
    docs_url: str | None
    redoc_url: str | None


def docs_urls() -> DocsUrls:
    """Where FastAPI serves its docs: in development, in production only if asked to."""
    if get_security_settings().serves_docs:
        return DocsUrls(openapi_url="/openapi.json", docs_url="/docs", redoc_url="/redoc")
    return DocsUrls(openapi_url=None, docs_url=None, redoc_url=None)


def log_access_mode() -> None:
    """One warning line at start-up when keys leave endpoints open, or unreachable."""
    keys = keyring()
    if keys.open:
        logger.warning(
            "no API keys are set (API_KEYS, OPS_API_KEYS): every endpoint is open to anyone; "
            "set them before this service is reachable by others (ENVIRONMENT=production "
            "refuses to start without them)"
        )
    elif not keys.ops:
        logger.warning(
            "OPS_API_KEYS is not set: the operator endpoints refuse every caller until it is"
        )
