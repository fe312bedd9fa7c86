"""The engine page (issues 15 and 17): one engine's state history, restarts, running vs desired configuration,
audit trail, the last lines of its log and its actions, drawn from what the dashboard's panel reads.

Metrics belong to monitoring, a layer above this one: it adds its part of the page with add_section() in its
ready(), as it adds its part of the live state to the hub, so this module never imports it.
"""

import json
import logging
from collections.abc import Callable

from django.conf import settings

from glmadmin import audit
from glmadmin.lib import logtail

from . import supervisor
from .models import LAUNCH_FIELDS, Engine
from .restart_metrics import restart_history

log = logging.getLogger(__name__)

EVENTS_SHOWN = 100
TRAIL_SHOWN = 30
LOG_BYTES = 64 * 1024
LOG_LINES = 200
LOG_LINE_CHARS = 2000

_sections: list[Callable[[Engine], str]] = []


def add_section(render: Callable[[Engine], str]) -> None:
    """Add a part of the page (HTML) that a higher layer draws for an engine, e.g. its metrics charts."""
    if render not in _sections:
        _sections.append(render)


def sections(engine: Engine) -> list[str]:
    drawn = []
    for render in _sections:
        try:
            drawn.append(render(engine))
        except Exception:  # noqa: BLE001 - a broken part (Redis down, a template) must not take the page with it
            log.exception("engine page: a section of engine %s cannot be drawn", engine.name)
    return drawn


def may_read_log(user) -> bool:
    # A log can hold what users sent (prompts logged at debug level, tracebacks): shown to those who may see
    # the engine in the admin, as the memory diagnosis, which reads the same log.
    return user.has_perm("inference.view_engine") or user.has_perm("inference.change_engine")


def configuration(engine: Engine) -> list[dict]:
    """Each launch field: what the row says (desired), what the process runs with, and whether they differ.
    Secrets (an HF_TOKEN in the environment, the value of an --api-key argument) are hidden, as in the audit
    trail; plain fields are shown as they are (a long model name is no token)."""
    running = bool(engine.pid and engine.running_config)
    rows = []
    for name in LAUNCH_FIELDS:
        desired = getattr(engine, name)
        current = engine.running_config.get(name, desired) if running else None
        rows.append({"name": name, "label": engine._meta.get_field(name).verbose_name,
                     "desired": _shown(name, desired), "running": _shown(name, current) if running else None,
                     "differs": running and current != desired})
    return rows


def _shown(name: str, value) -> str:
    if isinstance(value, dict):  # the environment: a token is a value (HF_TOKEN=...)
        value = {key: audit.HIDDEN if audit.looks_secret(key, v) else v for key, v in value.items()}
    elif isinstance(value, list):  # extra arguments: the value after (or in) a flag named like a secret
        value = [_hide_argument(value[i - 1] if i else None, item) for i, item in enumerate(value)]
    if value is None or value in ("", [], {}):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else str(value)


def _hide_argument(previous, item):
    if not isinstance(item, str):
        return item
    flag, equals, _ = item.partition("=")
    if equals and flag.startswith("-") and audit.is_secret_name(flag):
        return f"{flag}={audit.HIDDEN}"
    secret_flag = isinstance(previous, str) and previous.startswith("-") and "=" not in previous
    if secret_flag and audit.is_secret_name(previous):
        return audit.HIDDEN
    return item


def log_tail(engine: Engine) -> dict:
    """The last lines of the engine's log, bounded; read only on the engine's own host (the file is there)."""
    if engine.host != settings.GLMADMIN_HOST_NAME:
        return {"lines": [], "note": f"{engine.name} runs on host {engine.host}: its log is there "
                                     f"(manage.py engine_logs {engine.name} on that host)."}
    path = supervisor.log_file(engine)
    found = logtail.tail(path, max_bytes=LOG_BYTES, max_lines=LOG_LINES, max_line_chars=LOG_LINE_CHARS)
    if found.missing:
        return {"lines": [], "note": "No log yet: the engine has not been started on this host."}
    note = f"The last {len(found.lines)} line(s) of {found.size:,} bytes." if found.cut else ""
    return {"lines": found.lines, "note": note}


def context(engine: Engine, user) -> dict:
    return {
        "engine": engine,
        "events": list(engine.events.all()[:EVENTS_SHOWN]),
        "restarts": restart_history(engine.pk),
        "configuration": configuration(engine),
        "pending": engine.pending_restart(),
        "trail": audit.recent(Engine, [engine.pk], per_object=TRAIL_SHOWN).get(str(engine.pk), []),
        "log": log_tail(engine) if may_read_log(user) else None,
        "sections": sections(engine),
    }
