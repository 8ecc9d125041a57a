"""Which URLs a webhook may call: http and https only, to public addresses only.

A webhook makes this service send requests wherever a subscriber says, from inside its network: to
the cloud's metadata address, a database, an admin page on localhost. So the host is resolved and
every address it resolves to must be public, both when subscribing and again at every send (a name
can be made to resolve elsewhere later: DNS rebinding), and the send connects to the very address
that was checked, never resolving again in between. ``warehouse.webhooks_allow_private_addresses``
lifts the rule, for development and tests whose receivers are on loopback.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2000
# Characters a URL may not hold unencoded (RFC 3986): a request line with them is malformed.
UNSAFE = frozenset('"<>\\^`{|}')
HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to; tests put a stub resolver here.
Resolver = Callable[[str, int], list[str]]


class AddressRefused(ValueError):
    """The URL may not be called; the message says why, about ``url``, in words."""


class UrlMalformed(AddressRefused):
    """Not even an http or https URL with a host: bad input rather than a refused address."""


@dataclass(frozen=True)
class Target:
    """Where a checked URL is sent: the address to connect to, and what to say the host is."""

    scheme: str
    hostname: str  # for TLS's SNI and certificate check
    host_header: str  # as the URL wrote it, with its port if it gave one
    port: int
    path: str  # path and query
    address: str  # the checked IP address to connect to


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def why_not_public(address: IpAddress) -> str | None:
    """What kind of non-public address this is ("loopback", "private", ...); None if it is public."""
    # ::ffff:127.0.0.1 is 127.0.0.1, and 2002:7f00:1:: (6to4) reaches it too.
    embedded = getattr(address, "ipv4_mapped", None) or getattr(address, "sixtofour", None)
    if embedded is not None:
        return why_not_public(embedded)
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:  # shared (carrier-grade NAT), documentation, benchmarking ranges...
        return "non-public"
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_url(url: str) -> SplitResult:
    """The URL's parts; AddressRefused if it is no http or https URL with a host."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlMalformed(f"url may be at most {MAX_URL_LENGTH:,} characters long")
    if not url.isascii():
        raise UrlMalformed("url must be written in ASCII characters (an international domain name in its xn-- form)")
    if any(ord(char) < 0x21 or ord(char) == 0x7F or char in UNSAFE for char in url):
        raise UrlMalformed('url may not contain spaces, control characters, quotes or any of < > \\ ^ ` { | }')
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number from 0 to 65535
    except ValueError:
        raise UrlMalformed("url is not a URL that can be read") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlMalformed("url must be an http or https URL")
    if not parts.hostname:
        raise UrlMalformed("url has no host")
    if not HOST_NAME.fullmatch(parts.hostname) and not _is_ip(parts.hostname):
        raise UrlMalformed("url's host is not a host name (letters, digits, dots and dashes) or an IP address")
    if parts.username is not None or parts.password is not None:
        raise UrlMalformed("url may not carry a user name or password: the signature proves who sends")
    if parts.fragment:
        raise UrlMalformed("url may not have a #fragment: it is never sent")
    return parts


def check_url(url: str, allow_private: bool = False, resolve: Resolver | None = None) -> Target:
    """Where to send ``url``: its host resolved, each of its addresses checked; AddressRefused if any
    address is not public (unless ``allow_private``), or the name does not resolve."""
    parts = parse_url(url)
    scheme = parts.scheme.lower()
    hostname = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(hostname)]
    except ValueError:
        try:
            found = (resolve or system_resolver)(hostname, port)
        except (OSError, UnicodeError) as error:
            raise AddressRefused(f"url's host {hostname} could not be resolved ({error})") from None
        addresses = [ipaddress.ip_address(text.split("%", 1)[0]) for text in found]
    if not addresses:
        raise AddressRefused(f"url's host {hostname} could not be resolved (no address)")
    if not allow_private:
        for address in addresses:
            kind = why_not_public(address)
            if kind is not None:
                article = "an" if kind[0] in "aeiou" else "a"
                raise AddressRefused(
                    f"url points at {article} {kind} address ({address}); webhooks may only go to public addresses"
                )
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return Target(scheme, hostname, parts.netloc, port, path, str(addresses[0]))
