"""How a message reaches each kind of channel: one small class per kind, in a registry.

A transport checks a channel's settings (config_errors, used by the admin
form) and sends one message (send), raising DeliveryError when the other side
did not take it. It records nothing: delivery.py does that, the same way for
every kind. Adding a kind is a class here plus a NotificationChannel.Kind.
"""

import base64
import hashlib
import hmac
import json
import re
import smtplib
import time
from urllib.parse import quote_plus

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.validators import validate_email

from glmadmin.lib import http

from .messages import Message

TRANSPORTS: dict[str, "Transport"] = {}


class DeliveryError(Exception):
    """The message was not delivered. permanent: trying again cannot help (a 404, a refused recipient)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def register(cls):
    TRANSPORTS[cls.kind] = cls()
    return cls


def transport_for(kind: str) -> "Transport":
    return TRANSPORTS[kind]


def config_errors(channel) -> dict[str, str]:
    """Form errors for a channel's settings, keyed by field name."""
    errors = {}
    if not channel.levels:
        errors["levels"] = "Tick at least one level, or switch the channel off."
    if channel.kind in TRANSPORTS:
        errors.update(transport_for(channel.kind).config_errors(channel))
    return errors


class Transport:
    kind = ""

    def config_errors(self, channel) -> dict[str, str]:
        return {}

    def send(self, channel, message: Message, *, key: str) -> None:
        raise NotImplementedError


@register
class EmailTransport(Transport):
    """Plain-text email through the SMTP server of the settings (GLMADMIN_SMTP_*)."""

    kind = "email"

    @staticmethod
    def recipients(channel) -> list[str]:
        return [address for address in re.split(r"[\s,;]+", channel.recipients) if address]

    def config_errors(self, channel):
        addresses = self.recipients(channel)
        if not addresses:
            return {"recipients": "Enter at least one email address."}
        bad = []
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                bad.append(address)
        if bad:
            return {"recipients": f"Not an email address: {', '.join(bad)}."}
        return {}

    def send(self, channel, message, *, key):
        email = EmailMessage(
            subject=message.subject, body=message.text, from_email=settings.DEFAULT_FROM_EMAIL,
            to=self.recipients(channel),
            # A stable Message-ID: a mail system that receives a re-send of the same notification can drop it.
            headers={"Message-ID": f"<{key}@glmadmin>", "X-Glmadmin-Reason": message.reason},
            connection=get_connection(fail_silently=False),
        )
        try:
            email.send()
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
            raise DeliveryError(f"SMTP refused: {exc}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {settings.EMAIL_HOST}:{settings.EMAIL_PORT}: {type(exc).__name__}: {exc}") \
                from None


class HTTPTransport(Transport):
    """A JSON POST to the channel's URL; subclasses shape the body and read the answer."""

    def config_errors(self, channel):
        if not channel.url:
            return {"url": "Enter the URL to POST to."}
        try:
            http.check_url(channel.url, channel.address_policy)
        except http.AddressRefused as exc:
            label = dict(channel.ADDRESS_POLICIES)[exc.needs]
            return {"url": f'{exc} To use it anyway, set "Addresses allowed" to "{label}".'}
        except http.UnsafeURL as exc:
            return {"url": str(exc)}
        return {}

    def body(self, channel, message: Message, key: str) -> dict:
        raise NotImplementedError

    def url(self, channel) -> str:
        return channel.url

    def headers(self, channel, message: Message, content: bytes, key: str) -> dict[str, str]:
        return {"Idempotency-Key": key}

    def check(self, reply: http.Reply) -> None:
        if reply.ok:
            return
        # A 4xx is our request or the URL being wrong: resending the same thing cannot help.
        # 408 and 429 are the exceptions: the server asks to come back later.
        permanent = 300 <= reply.status < 500 and reply.status not in (408, 425, 429)
        raise DeliveryError(f"HTTP {reply.status}: {reply.text[:200]}", permanent=permanent)

    def send(self, channel, message, *, key):
        content = json.dumps(self.body(channel, message, key), ensure_ascii=False).encode()
        try:
            reply = http.post_json(self.url(channel), None, content=content, policy=channel.address_policy,
                                   timeout=settings.NOTIFY_TIMEOUT_SECONDS,
                                   headers=self.headers(channel, message, content, key))
        except http.HostNotFound as exc:
            raise DeliveryError(str(exc)) from None  # DNS may be back in a minute
        except http.UnsafeURL as exc:
            raise DeliveryError(str(exc), permanent=True) from None
        except http.RequestFailed as exc:
            raise DeliveryError(str(exc)) from None
        self.check(reply)


@register
class WebhookTransport(HTTPTransport):
    """Our own JSON: every fact as a field, signed with the channel's secret when it has one."""

    kind = "webhook"

    def body(self, channel, message, key):
        return {"id": key, **message.data}

    def headers(self, channel, message, content, key):
        headers = {**super().headers(channel, message, content, key), "X-Glmadmin-Reason": message.reason}
        if channel.secret:
            digest = hmac.new(channel.secret.encode(), content, hashlib.sha256).hexdigest()
            headers["X-Glmadmin-Signature"] = f"sha256={digest}"
        return headers


@register
class SlackTransport(HTTPTransport):
    """Slack incoming webhooks; Mattermost, Rocket.Chat and others accept the same {"text": ...}."""

    kind = "slack"

    def body(self, channel, message, key):
        return {"text": f"*{message.subject}*\n{message.text}"}


class RobotTransport(HTTPTransport):
    """Chinese team chat robots answer HTTP 200 with {"errcode": 0} on success and a non-zero errcode otherwise."""

    def check(self, reply):
        super().check(reply)
        try:
            answer = json.loads(reply.text)
        except ValueError:
            raise DeliveryError(f"unexpected answer (not JSON): {reply.text[:200]}") from None
        if answer.get("errcode", 0) != 0:
            raise DeliveryError(f"robot refused: errcode {answer.get('errcode')}: {answer.get('errmsg', '')}")


@register
class WeComTransport(RobotTransport):
    """WeCom (企业微信) group robot: .../cgi-bin/webhook/send?key=..."""

    kind = "wecom"

    def body(self, channel, message, key):
        return {"msgtype": "text", "text": {"content": f"{message.subject}\n{message.text}"}}


@register
class DingTalkTransport(RobotTransport):
    """DingTalk (钉钉) robot: .../robot/send?access_token=..., signed when it has a secret."""

    kind = "dingtalk"

    def body(self, channel, message, key):
        text = message.text.replace("\n", "\n\n")  # markdown needs blank lines between paragraphs
        markdown = {"title": message.subject, "text": f"#### {message.subject}\n\n{text}"}
        return {"msgtype": "markdown", "markdown": markdown}

    def url(self, channel):
        if not channel.secret:
            return channel.url
        # DingTalk's "additional signature" security setting: HMAC-SHA256 of "timestamp\nsecret", base64.
        timestamp = str(round(time.time() * 1000))
        digest = hmac.new(channel.secret.encode(), f"{timestamp}\n{channel.secret}".encode(), hashlib.sha256).digest()
        sign = quote_plus(base64.b64encode(digest))
        separator = "&" if "?" in channel.url else "?"
        return f"{channel.url}{separator}timestamp={timestamp}&sign={sign}"
