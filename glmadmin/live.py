"""The live state every page shows (status bar, banners, telemetry), and its publisher.

A hub: glmadmin knows no app. Each app adds its part of the state in its
AppConfig.ready() (alerts: incidents and admission; inference: engines;
monitoring: disks, cache and telemetry), and may add an HTML fragment. So the
engine supervisor can publish without depending on monitoring, and a part that
fails to render never stops the state change that asked for the publish
(publish_on_commit is robust).

Every websocket message is the whole state, never a delta: a browser that
missed messages (channels_redis drops them for a full channel) is right again
with the next one, and a (re)connecting browser first gets the current state.
The HTML fragments are rendered by the same templates the pages use, so there
is one way to draw a banner.

A page may have fragments of its own (the dashboard's cards): its browsers join
a group of their own ("live.<page>") and get the shared fragments and the page's;
every other page gets only the shared ones, so a chat page never carries the
dashboard. Each publish renders every fragment once, whatever the number of
open pages, and sends only when what the pages would show changed.
"""

import hashlib
import json
import logging
import time
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string

from glmadmin.lib import redis as rd

log = logging.getLogger(__name__)

GROUP = "live"

# Each part returns the keys it adds to the state, with the keys it stands for when it cannot be read
# (its fallback); each fragment draws one element of every page.
_parts: dict[str, tuple[Callable[[], dict], dict]] = {}
_fragments: dict[str, Callable[[dict], str]] = {
    # The status bar and the banners are the pages' own; the parts fill them in.
    "statusbar": lambda current: render_to_string("partials/statusbar.html", {"live": current}),
    "alerts": lambda current: render_to_string("partials/alerts.html", {"live": current}),
}


def add_part(name: str, part: Callable[[], dict], fallback: dict) -> None:
    """Add a part of the state; `fallback` stands in for it while it cannot be read (Redis down)."""
    _parts[name] = (part, fallback)


# page -> its own fragments, sent only to browsers showing that page.
_page_fragments: dict[str, dict[str, Callable[[dict], str]]] = {}


def add_fragment(name: str, render: Callable[[dict], str], page: str | None = None) -> None:
    """Add an HTML fragment of every page, or only of `page` (its browsers connect with ?page=<page>)."""
    if page is None:
        _fragments[name] = render
    else:
        _page_fragments.setdefault(page, {})[name] = render


def pages() -> list[str]:
    return list(_page_fragments)


def group(page: str | None = None) -> str:
    return GROUP if page is None else f"{GROUP}.{page}"


def state() -> dict:
    """The whole state. A part that fails is replaced by its fallback and named in "unavailable": a page
    is drawn from what can be read (the database) rather than not at all."""
    current: dict = {"unavailable": []}
    for name, (part, fallback) in _parts.items():
        try:
            current.update(part())
        except Exception:  # noqa: BLE001 - any broken source; logged, and the page says which part is missing
            log.exception("live state: the %s part cannot be read", name)
            current.update(fallback)
            current["unavailable"].append(name)
    return current


def message(current: dict | None = None, page: str | None = None) -> dict:
    current = state() if current is None else current
    renders = {**_fragments, **_page_fragments.get(page, {})} if page in _page_fragments else _fragments
    return {"type": "state", "state": current,
            "html": {name: render(current) for name, render in renders.items()}}


def publish(force: bool = False) -> bool:
    """Send the current state to every open page, if it changed since the last send.

    The digest covers the rendered fragments too: a card can change without the state (an engine's probe
    time, a notification sent), and a publish that would show nothing new sends nothing.
    """
    current = state()
    shared = message(current)
    # A page's cards are drawn only while some web process has a browser showing it: with no dashboard open,
    # a publish reads no more than the status bar needs.
    own = {page: {**shared, "html": {**shared["html"], **{name: render(current) for name, render in renders.items()}}}
           for page, renders in _page_fragments.items() if _watched(page)}
    everything = {"shared": shared, **{page: msg["html"] for page, msg in own.items()}}
    digest = hashlib.sha256(json.dumps(everything, sort_keys=True).encode()).hexdigest()
    previous = rd.client().set(rd.key("live", "digest"), digest, get=True)
    if previous == digest and not force:
        return False
    now = time.time()
    send = async_to_sync(get_channel_layer().group_send)
    # Encoded once here rather than once per open page by each consumer.
    for page, msg in ((None, shared), *own.items()):
        send(group(page), {"type": "live.state", "text": json.dumps({**msg, "published_at": now})})
    return True


def _watched(page: str) -> bool:
    """Whether any web process listens to the page's group (the pubsub channel layer subscribes each process
    once per group it has members in). True when that cannot be told: sending too much is only slower."""
    try:
        # channels_redis's pubsub layer names a group's Redis channel so (its _get_group_channel_name, which
        # needs an event loop); the prefix is the layer's, from settings.
        prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"].get("prefix", "asgi")
        channel = f"{prefix}__group__{group(page)}"
        return dict(rd.client().pubsub_numsub(channel)).get(channel, 0) > 0
    except Exception:  # noqa: BLE001 - another channel layer, or Redis down (the send below says so)
        return True


def publish_on_commit(force: bool = True) -> None:
    """Publish once the caller's transaction commits; a failure is logged, never raised to the caller.

    The pages are a view of the database: a state change that committed must
    go on (its incident opened, its next step taken) even when Redis or a
    template is broken, and the next publish corrects the pages.
    """
    transaction.on_commit(lambda: publish(force=force), robust=True)
