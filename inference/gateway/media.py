"""Media parts of chat messages (image, audio, video): which the gateway forwards, and to which engines.

A multimodal vLLM fetches a media URL itself, from the engine's host: whatever that host can reach (the
cloud metadata service at 169.254.169.254, the private network, its own loopback ports) a client could make
it fetch. So media parts go only to engines an administrator marked as serving a multimodal model
(Engine.multimodal), and a URL only when its host is, exactly, one of that engine's allowed media domains:

- a text-only engine (every engine unless marked): every media part is refused (media_not_supported);
- never forwarded, whatever the engine: file parts, *_embeds parts (tensors the engine loads as given),
  untyped parts, and text parts that carry media keys (vLLM reads a part as media by its keys);
- data: URLs and input_audio (bytes inside the request) are forwarded to a multimodal engine;
- http(s) URLs only when the host is in the engine's list, compared as vLLM compares it (the exact host name,
  no subdomains); a host that is a loopback, private, link-local or otherwise non-public address (in any
  spelling: 2852039166, 0xa9fea9fe, [::ffff:169.254.169.254]) or a local name (localhost, *.internal, a name
  without a dot) is named as such (media_url_private) and refused unless that exact host is listed;
- every other scheme (file:, ftp:, ...) and URLs with a user part, backslashes, spaces or non-ASCII
  characters (where URL parsers disagree on the host) are refused.

An empty list means no URL is fetched: only data: URLs and input_audio. vLLM's own flag means the opposite
(no --allowed-media-domains, or an empty one: any host), so an engine whose list is empty is started with a
host that never resolves (options.MEDIA_NO_HOST, RFC 6761) and vLLM refuses every URL too. Engines are started with
redirects off (VLLM_MEDIA_URL_ALLOW_REDIRECTS=0): a listed host cannot bounce the fetch elsewhere.

The gateway does not resolve names: a listed name is trusted as the administrator listed it.
"""

import ipaddress
import json
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import bad_request

# Part type -> the keys its object may have. The part itself has only "type" and this key.
PARTS = {"image_url": frozenset({"url", "detail"}), "audio_url": frozenset({"url"}),
         "video_url": frozenset({"url"}), "input_audio": frozenset({"data", "format"})}
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".lan")
_UNSAFE_URL = re.compile(r"[^\x21-\x7e]|\\")  # spaces, controls, non-ASCII, backslashes
# Beyond ipaddress's is_private: shared address space (CGNAT) and IPv6 prefixes that embed an IPv4 destination.
_MORE_BLOCKED = tuple(ipaddress.ip_network(n) for n in ("100.64.0.0/10", "2002::/16", "64:ff9b::/96"))


@dataclass(frozen=True)
class Part:
    """A media part of a request: where it is (for the answer's param) and its URL (None: inline bytes)."""

    field: str
    kind: str
    url: str | None

    @property
    def url_field(self) -> str:
        return f"{self.field}.{self.kind}.url"


def part_of(name: str, part: dict) -> Part | None:
    """The media part `part` is, if it is one the gateway may forward to a multimodal engine; None if not."""
    kind = part.get("type")
    if kind not in PARTS or part.keys() != {"type", kind}:
        return None
    value = part[kind]
    if not isinstance(value, dict) or value.keys() - PARTS[kind]:
        return None
    if kind == "input_audio":
        if not isinstance(value.get("data"), str) or not isinstance(value.get("format", ""), str):
            return None
        return Part(name, kind, None)
    url = value.get("url")
    if not isinstance(url, str) or not isinstance(value.get("detail", ""), str):
        return None
    found = Part(name, kind, url)
    if not url[:5].lower() == "data:":
        _check_url_form(found)
    return found


def _check_url_form(part: Part) -> None:
    """What is refused whatever the engine: schemes other than http(s) and data, and URLs parsers disagree on."""
    scheme = part.url.partition(":")[0].lower()
    if scheme not in ("http", "https"):
        raise bad_request("media_url_refused", f"'{part.url_field}': only http, https and data: URLs are "
                                               f"forwarded, not {scheme or 'this'}: URLs.", part.url_field)
    try:
        parts = urlsplit(part.url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        parts = None
    if parts is None or _UNSAFE_URL.search(part.url) or "@" in parts.netloc or not parts.hostname:
        raise bad_request("media_url_refused", f"'{part.url_field}' is not a plain http(s) URL with a host (no user "
                                               "part, spaces, backslashes or non-ASCII characters).", part.url_field)


def host(url: str) -> str:
    """The URL's host as vLLM compares it with its allowed domains: lower case, without a trailing dot."""
    return (urlsplit(url).hostname or "").rstrip(".")


def non_public(name: str) -> bool:
    """A loopback, private, link-local or otherwise non-public address (any spelling), or a local name."""
    address = _address(name)
    if address is not None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return not address.is_global or address.is_multicast or any(address in net for net in _MORE_BLOCKED)
    return name == "localhost" or "." not in name or name.endswith(_LOCAL_SUFFIXES)


def _address(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fx.]+", name) and not name.endswith("."):
        try:  # what the C resolver reads as an address: 2852039166, 0xa9.0xfe.169.254, 0251.0376.0251.0376, 10.1
            return ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    return None


def refused_url(part: Part, domains: frozenset) -> None:
    """Raises GatewayError 400 unless the part's URL may be fetched by an engine allowed `domains`."""
    if part.url is None or part.url[:5].lower() == "data:":
        return
    name = host(part.url)
    if name in domains:
        return
    if non_public(name):
        raise bad_request("media_url_private", f"'{part.url_field}' points at {name}, a loopback, private, "
                                               "link-local or local address: media is never fetched from there "
                                               "unless an administrator lists that exact host.", part.url_field)
    listed = ", ".join(sorted(domains)) if domains else "none: send media as data: URLs"
    raise bad_request("media_url_not_allowed", f"'{part.url_field}': media is fetched only from the engine's "
                                               f"allowed domains (listed: {listed}); {name} is not one of them.",
                      part.url_field)


async def check(model: str, parts: list[Part]) -> None:
    """Raises GatewayError 400 unless every enabled engine of `model` is marked multimodal and may fetch every
    part's URL. Every one: the request may go to any of them (and to another if the first fails), and engines
    of one model are copies of each other, so a mismatch is a mistake refused, not guessed around. Only
    requests with media parts come here: one read of the routing table, which text requests never pay."""
    from . import redis_state, routing

    client = redis_state.client()
    routes = await client.hgetall(redis_state.routes_key())
    if redis_state.SYNCED not in routes:
        await routing.rebuild()
        routes = await client.hgetall(redis_state.routes_key())
    engines = [entry for name, raw in routes.items() if name != redis_state.SYNCED
               and (entry := json.loads(raw)).get("enabled") and entry.get("model") == model]
    if not engines or any(entry.get("media") is None for entry in engines):
        first = parts[0]
        raise bad_request("media_not_supported", f"'{first.field}': {first.kind} parts are refused: the engine "
                                                 f"serving model '{model}' is not marked as serving a multimodal "
                                                 "model (it would fetch media URLs from its own host). Send text "
                                                 "only.", first.field)
    domains = frozenset.intersection(*(frozenset(entry["media"]) for entry in engines))
    for part in parts:
        refused_url(part, domains)


