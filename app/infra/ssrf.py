"""Outbound URLs that must not reach inside the network (SSRF), checked by address.

A host name is resolved (on the event loop's resolver, off the loop's thread) and every
address it resolves to must be public: a name with one private address among public
ones is refused, since the client may connect to any of them. `pinned` then returns the
URL rewritten to one checked address, so the connection goes where the check looked
(no second resolution an attacker's DNS could answer differently: DNS rebinding).
"""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """The URL is not http(s), does not resolve, or reaches a non-public address."""


@dataclass(frozen=True)
class Pinned:
    url: str  # the host replaced by a checked address
    host: str  # the Host header: the name (and port) as written
    server_name: str  # TLS: the name sent as SNI and checked against the certificate


def is_public(address: IPAddress) -> bool:
    """Global unicast only: not private, loopback, link-local, shared, reserved, multicast."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


async def resolve_public(url: str) -> list[IPAddress]:
    """Every address of the URL's host, all public; raises `UnsafeUrl` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("Only http and https URLs with a host name are accepted.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise UnsafeUrl(f"The host {parts.hostname!r} could not be resolved.") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    refused = sorted({str(a) for a in addresses if not is_public(a)})
    if not addresses or refused:
        raise UnsafeUrl(
            f"The host {parts.hostname!r} resolves to a non-public address "
            f"({', '.join(refused) or 'none'}); webhooks must reach the public internet."
        )
    return addresses


async def pinned(url: str) -> Pinned:
    """`url` with its host replaced by one of its (checked, public) addresses."""
    parts = urlsplit(url)
    address = (await resolve_public(url))[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    userinfo, _, host = parts.netloc.rpartition("@")
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    netloc = f"{userinfo}@{netloc}" if userinfo else netloc
    return Pinned(urlunsplit(parts._replace(netloc=netloc)), host, parts.hostname or host)
