"""What a notification says. Built once when it is planned and stored with it,
so every retry sends the same words, and the history shows what people read."""

from dataclasses import asdict, dataclass, replace
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from ..levels import Level, rank
from ..models import Incident, IncidentEvent, Notification

Reason = Notification.Reason

TEST_NOTE = "This is a test alert (manage.py test_alert): nothing is wrong."


@dataclass(frozen=True)
class Message:
    subject: str
    text: str  # plain text, a few lines; chat transports add their own markup
    reason: str
    level: str  # "" when resolved or for a channel test
    is_test: bool
    data: dict  # the body of a generic webhook, with the facts as fields

    def as_payload(self) -> dict:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict) -> "Message":
        return cls(**payload)


PAUSED = "New inference requests are paused while it is red (answered 503, requests_paused)."


def for_event(incident: Incident, event: IncidentEvent, reason: str) -> Message:
    """The message for a transition: opened, escalated, de-escalated or resolved."""
    if reason == Reason.RESOLVED:
        subject = f"[RESOLVED] {incident.title}"
        lines = [f"{incident.title} is resolved{_reading(incident, event.value)}.",
                 f"Open for {_duration(incident.opened_at, event.at)}, peak level {incident.peak_level}."]
        if event.note:  # resolved by a person, or because nobody watches the subject any more
            who = f" by {event.user.get_username()}" if event.user else ""
            lines.append(f"Resolved{who}: {event.note}")
    else:
        previous = _previous_level(event)
        what = {Reason.OPENED: "opened", Reason.ESCALATED: f"escalated from {previous}",
                Reason.DEESCALATED: f"down from {previous}, still open"}[reason]
        subject = f"[{event.level.upper()}] {incident.title}: {what}"
        lines = [f"{incident.title}: {incident.message}.", f"Level {event.level} since {_time(event.at)}."]
        if event.level == Level.RED:
            lines.append(PAUSED)
    return _message(incident, subject, lines, reason=reason, level="" if reason == Reason.RESOLVED else event.level,
                    event=event)


def for_repeat(incident: Incident, red_event: IncidentEvent, number: int) -> Message:
    subject = f"[RED] {incident.title}: still red, not acknowledged (reminder {number})"
    lines = [f"{incident.title}: {incident.message}.", PAUSED,
             f"Red since {_time(red_event.at)} ({_duration(red_event.at, timezone.now())}). "
             "Acknowledge it on the dashboard to stop these reminders."]
    return _message(incident, subject, lines, reason=Reason.REPEAT, level=Level.RED, event=red_event)


def for_escalation(incident: Incident, red_event: IncidentEvent, after_minutes: int) -> Message:
    subject = f"[RED] {incident.title}: nobody acknowledged it for {after_minutes} min"
    lines = [f"{incident.title}: {incident.message}.", PAUSED,
             f"Red since {_time(red_event.at)} ({_duration(red_event.at, timezone.now())}) and not acknowledged: "
             "you are the next step. Acknowledge it on the dashboard to stop the escalation."]
    return _message(incident, subject, lines, reason=Reason.ESCALATION, level=Level.RED, event=red_event)


def after_silence(message: Message, silence) -> Message:
    """The message of a transition that a silence held back, saying so."""
    why = f" ({silence.reason})" if silence is not None else ""
    text = f"{message.text}\nThis was held back by a silence{why} that has ended; the incident is still open."
    return replace(message, text=text, data={**message.data, "text": text, "after_silence": True})


def after_inhibition(message: Message, cause) -> Message:
    """The message of a transition held back while its likely cause (a red disk on its host) was red."""
    what = f"{cause.title} was red on {cause.host}" if cause is not None else "a red disk on its host was open"
    text = (f"{message.text}\nThis was held back while {what} (the likely cause); that is no longer red and "
            "this incident is still open.")
    return replace(message, text=text, data={**message.data, "text": text, "after_inhibition": True})


def for_group(host: str, items: list[Message]) -> Message:
    """One message for the changes of a host's incidents collected in one group (at least one).

    A group of one says exactly what the change says alone; a larger one lists each change, the worst
    level first in the subject.
    """
    if len(items) == 1:
        return items[0]
    worst = max((item.level for item in items), key=rank)  # a resolve ("") ranks below every level
    titles = ", ".join(dict.fromkeys(item.data["incident"]["title"] for item in items if item.data.get("incident")))
    subject = f"[{worst.upper() or 'RESOLVED'}] {len(items)} changes on {host}: {titles}"
    is_test = all(item.is_test for item in items)
    if is_test:
        subject = f"[TEST] {subject}"
    lines = [f"{len(items)} changes on host {host}:"]
    for item in items:
        lines.append(f"- {_unmarked(item.subject)}")
        lines += [f"  {line}" for line in item.text.splitlines()
                  if line and not line.startswith("Dashboard: ") and line != TEST_NOTE]
    if is_test:
        lines.append(TEST_NOTE)
    if _url():
        lines.append(f"Dashboard: {_url()}")
    text = "\n".join(lines)
    data = {"reason": Reason.GROUP.value, "subject": subject, "text": text, "is_test": is_test, "level": worst,
            "host": host, "incident": None, "event": None, "items": [item.data for item in items], "url": _url()}
    return Message(subject, text, Reason.GROUP.value, worst, is_test, data)


def _unmarked(subject: str) -> str:
    return subject.removeprefix("[TEST] ")


def for_channel_test(channel_name: str) -> Message:
    subject = f"[TEST] glmadmin notification test for {channel_name}"
    text = f"If you can read this, the channel {channel_name!r} works. Sent {_time(timezone.now())}."
    data = {"reason": Reason.TEST.value, "subject": subject, "text": text, "is_test": True, "level": "",
            "incident": None, "event": None, "url": _url()}
    return Message(subject, text, Reason.TEST.value, "", True, data)


def _message(incident, subject, lines, *, reason, level, event) -> Message:
    if incident.acknowledged_at:
        lines.append(f"Acknowledged by {incident.acknowledged_by or 'someone'} at {_time(incident.acknowledged_at)}.")
    if incident.is_test:
        subject = f"[TEST] {subject}"
        lines.append(TEST_NOTE)
    if _url():
        lines.append(f"Dashboard: {_url()}")
    text = "\n".join(lines)
    data = {
        "reason": str(reason), "subject": subject, "text": text, "is_test": incident.is_test, "level": str(level),
        "incident": {
            "id": incident.pk, "kind": incident.kind, "source": incident.source, "title": incident.title,
            "level": incident.level, "peak_level": incident.peak_level, "message": incident.message,
            "opened_at": incident.opened_at.isoformat(),
            "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
            "acknowledged_by": str(incident.acknowledged_by) if incident.acknowledged_by else None,
        },
        "event": {"kind": event.kind, "at": event.at.isoformat(), "level": event.level, "value": event.value},
        "url": _url(),
    }
    return Message(subject, text, str(reason), str(level), incident.is_test, data)


def _previous_level(event: IncidentEvent) -> str:
    before = event.incident.events.filter(pk__lt=event.pk).exclude(level="").exclude(kind=event.Kind.ACKNOWLEDGED)
    last = before.order_by("-pk").first()
    return last.level if last else "?"


def _reading(incident: Incident, value: float | None) -> str:
    if value is None:
        return ""
    unit = " %" if incident.kind == Incident.Kind.DISK else ""
    return f" (now {value:.1f}{unit})"


def _time(at: datetime) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S %Z")


def _duration(start: datetime, end: datetime) -> str:
    minutes = max(0, int((end - start).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _url() -> str:
    return settings.PUBLIC_URL + "/" if settings.PUBLIC_URL else ""
