"""Outbound HTTP for notifications: one wrapper with timeouts and a URL check.

The URLs come from admin users and are fetched by the worker, which usually
sits inside a private network and often on a cloud VM: an unchecked URL would
let anyone with admin access make the worker talk to the cloud metadata
service or to internal services (SSRF). So every URL is checked when it is
saved and again before each request (DNS answers can change in between):

- only http and https;
- loopback and private networks only where the channel allows them (an
  on-premise chat server is a normal case, so it is a switch, not a ban);
- link-local and the cloud metadata addresses only where explicitly allowed.

Redirects are not followed: a 3xx to a forbidden address would bypass the
check. Response bodies are read up to a small limit.
"""

import enum
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

MAX_BODY_BYTES = 64 * 1024

# Metadata services outside 169.254.0.0/16: AWS's IPv6 endpoint and Alibaba
# Cloud's (common where WeCom and DingTalk robots are used).
METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: internal, not public


class AddressPolicy(enum.StrEnum):
    PUBLIC = "public"  # public internet addresses only
    PRIVATE = "private"  # also loopback and private networks
    ANY = "any"  # also link-local and cloud metadata


class UnsafeURL(ValueError):
    """The URL may not be fetched; the message says why, for an admin form."""


class AddressRefused(UnsafeURL):
    """The host's address needs a more permissive policy (needs)."""

    def __init__(self, message: str, needs: AddressPolicy):
        super().__init__(message)
        self.needs = needs


class HostNotFound(UnsafeURL):
    """The host name does not resolve (now): maybe a typo, maybe DNS is down."""


class RequestFailed(Exception):
    """The request got no HTTP answer (refused, timed out, DNS, TLS)."""


@dataclass(frozen=True)
class Reply:
    status: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def address_class(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> AddressPolicy:
    """The least permissive policy under which this address may be reached."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    if ip in METADATA_ADDRESSES or ip.is_link_local:
        return AddressPolicy.ANY
    if (ip.is_private or ip.is_loopback or ip.is_unspecified or ip.is_reserved or ip.is_multicast
            or ip in SHARED_ADDRESS_SPACE):
        return AddressPolicy.PRIVATE
    return AddressPolicy.PUBLIC


_ORDER = [AddressPolicy.PUBLIC, AddressPolicy.PRIVATE, AddressPolicy.ANY]
_REFUSALS = {
    AddressPolicy.PRIVATE: "a loopback or private network address, refused unless private addresses are allowed",
    AddressPolicy.ANY: "a link-local or cloud metadata address, refused unless any address is allowed",
}


def check_url(url: str, policy: AddressPolicy | str = AddressPolicy.PUBLIC) -> None:
    """Raise UnsafeURL unless url is http(s) and every address its host resolves to is allowed."""
    policy = AddressPolicy(policy)
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL(f"Not a valid URL: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"Only http:// and https:// URLs are allowed, not {parts.scheme or 'no scheme'}.")
    host = parts.hostname
    if not host:
        raise UnsafeURL("The URL has no host name.")
    for ip in _addresses(host, port):
        needed = address_class(ip)
        if _ORDER.index(needed) > _ORDER.index(policy):
            where = "is" if str(ip) == host else f"resolves to {ip},"
            raise AddressRefused(f"The host {host} {where} {_REFUSALS[needed]}.", needed)


def _addresses(host: str, port: int):
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise HostNotFound(f"The host name {host} does not resolve ({exc}).") from None
    # Scope ids (fe80::1%eth0) are not part of the address.
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def post_json(url: str, payload, *, policy: AddressPolicy | str, timeout: float,
              headers: dict[str, str] | None = None, content: bytes | None = None) -> Reply:
    """POST payload as JSON (or the pre-encoded content) and return the answer.

    Raises UnsafeURL if the URL is not allowed (now), RequestFailed when no
    HTTP answer came within timeout seconds.
    """
    check_url(url, policy)
    request_headers = {"Content-Type": "application/json", "User-Agent": "glmadmin-notify/1"}
    request_headers.update(headers or {})
    # connect gets its own, shorter bound: a black-holed host should fail fast.
    limits = httpx.Timeout(timeout, connect=min(timeout, 5.0))
    try:
        with httpx.Client(timeout=limits, follow_redirects=False) as client:
            kwargs = {"content": content} if content is not None else {"json": payload}
            with client.stream("POST", url, headers=request_headers, **kwargs) as response:
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) >= MAX_BODY_BYTES:
                        break
                return Reply(response.status_code, body[:MAX_BODY_BYTES].decode("utf-8", "replace"))
    except httpx.HTTPError as exc:
        raise RequestFailed(f"{type(exc).__name__}: {exc or 'no details'}") from None
