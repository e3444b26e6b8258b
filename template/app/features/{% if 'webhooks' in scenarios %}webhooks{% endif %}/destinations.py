"""Where a webhook may go (SSRF safety): https in production, public addresses only, re-checked.

A receiver URL is chosen by a caller, and the service POSTs to it from inside your network.
Without these checks a caller could reach what only the service can: a database's admin
port, a cloud metadata endpoint (169.254.169.254), an internal dashboard. Every address
the host resolves to must be public, at registration and again right before each attempt
(a name can resolve elsewhere by then: DNS rebinding), and the attempt connects to the
address that was checked, not to whatever a second lookup would say.
"""

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A host label that some resolvers read as a number: 2130706433, 0x7f, 0177 (inet_aton's
# decimal, hex and octal forms). Such a host is an address in disguise: refused outright.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
# Python's URL parser drops tabs and line breaks silently; an HTTP client refuses them later.
_UNSENDABLE = re.compile("[\x00-\x20\x7f-\xa0\u2028\u2029]")
RESOLVE_TIMEOUT_SECONDS = 5.0


class UnsafeDestination(ValueError):
    """The URL may not receive webhooks; the message says why and what to do."""


@dataclass(frozen=True)
class Destination:
    """A checked URL and the address to connect to (None: let the client resolve it)."""

    url: str
    host: str
    address: IPAddress | None


def parse(url: str, *, allow_http: bool) -> SplitResult:
    """The URL's parts, if its form is acceptable: http(s), a host, no credentials."""
    if _UNSENDABLE.search(url):
        raise UnsafeDestination(
            "the URL must not contain spaces, line breaks or control characters"
        )
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeDestination(
            "the URL must start with https://"
            + (" or http://" if allow_http else " (http is allowed in development only)")
        )
    if not parts.hostname:
        raise UnsafeDestination("the URL must name a host, like https://example.com/hooks")
    if parts.username is not None or parts.password is not None:
        raise UnsafeDestination("the URL must not carry a user name or password")
    if parts.fragment:
        raise UnsafeDestination("the URL must not have a #fragment (it is never sent)")
    try:
        parts.port  # noqa: B018  # raises for a port out of range
    except ValueError:
        raise UnsafeDestination("the URL's port must be a number from 1 to 65535") from None
    host = parts.hostname
    if ":" not in host and all(_NUMERIC_LABEL.fullmatch(label) for label in host.split(".")):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise UnsafeDestination(
                f"the host {host!r} is a number in disguise (decimal, octal or hex): write a "
                "host name, or an IPv4 address as four decimal numbers"
            ) from None
    return parts


def refusal(address: IPAddress) -> str | None:
    """Why `address` may not receive webhooks, or None if it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:  # ::ffff:127.0.0.1 reaches 127.0.0.1
            reason = refusal(embedded)
            return f"{reason} (inside the IPv6 address {address})" if reason else None
    for kind, matches in (
        ("loopback", address.is_loopback),
        ("private", address.is_private),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
        ("not globally reachable", not address.is_global),
    ):
        if matches:
            return f"{address} is a {kind} address"
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is its own answer)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError) as exc:
        raise UnsafeDestination(f"the host {host!r} cannot be resolved ({exc})") from None
    # The scope of a link-local IPv6 answer (fe80::1%eth0) is not part of the address.
    return list(
        dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
    )


async def check(url: str, *, allow_http: bool, allow_private: bool) -> Destination:
    """Check `url` as a receiver and pick the address to connect to; `UnsafeDestination` if not.

    Every address the name resolves to must be public: a name answering with one public
    and one private address would reach the private one on some attempts.
    """
    parts = parse(url, allow_http=allow_http)
    host = parts.hostname
    assert host is not None  # parse refuses a URL without one
    if allow_private:
        return Destination(url, host, None)
    addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    if not addresses:
        raise UnsafeDestination(f"the host {host!r} resolves to no address")
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            raise UnsafeDestination(
                f"webhooks cannot be sent to {host!r}: {reason}, inside a network; set "
                "WEBHOOKS_ALLOW_PRIVATE_URLS=true only if receivers there are trusted"
            )
    return Destination(url, host, addresses[0])
