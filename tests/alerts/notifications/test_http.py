"""The outbound HTTP wrapper: which URLs it refuses, and that it never waits or follows blindly."""

import socket
import time

import pytest

from glmadmin.lib import http
from tests.support import notify as notify_support

receiver = notify_support.receiver  # the real webhook receiver, as a fixture of this module


@pytest.mark.parametrize(
    ("url", "policy", "refusal"),
    [
        ("ftp://example.com/hook", "any", "Only http:// and https:// URLs"),
        ("file:///etc/passwd", "any", "Only http:// and https:// URLs"),
        ("javascript:alert(1)", "any", "Only http:// and https:// URLs"),
        ("hooks.example.com/x", "any", "Only http:// and https:// URLs"),
        ("http:///path-only", "any", "no host name"),
        ("http://[::1/x", "any", "Not a valid URL"),
        ("http://127.0.0.1:8000/hook", "public", "loopback or private network"),
        ("http://localhost/hook", "public", "resolves to"),
        ("http://10.1.2.3/hook", "public", "loopback or private network"),
        ("http://100.64.0.1/hook", "public", "loopback or private network"),
        ("http://0.0.0.0/hook", "public", "loopback or private network"),
        ("http://[::1]/hook", "public", "loopback or private network"),
        ("http://169.254.169.254/latest/meta-data/", "private", "link-local or cloud metadata"),
        ("http://[fd00:ec2::254]/latest/", "private", "link-local or cloud metadata"),
        ("http://100.100.100.200/latest/meta-data/", "private", "link-local or cloud metadata"),
        ("http://[::ffff:169.254.169.254]/", "private", "link-local or cloud metadata"),
        ("http://[fe80::1]/", "private", "link-local or cloud metadata"),
        ("http://no-such-host.invalid/hook", "any", "does not resolve"),
    ],
)
def test_refused_urls_say_why(url, policy, refusal):
    with pytest.raises(http.UnsafeURL, match=refusal):
        http.check_url(url, policy)


@pytest.mark.parametrize(
    ("url", "policy"),
    [
        ("https://93.184.215.14/hook", "public"),
        ("http://[2606:4700::1111]/hook", "public"),
        ("http://127.0.0.1:8000/hook", "private"),
        ("http://192.168.1.10/hook", "private"),
        ("http://169.254.169.254/", "any"),
    ],
)
def test_allowed_urls(url, policy):
    http.check_url(url, policy)


def test_post_reaches_a_real_receiver(receiver):
    reply = http.post_json(receiver.url + "?key=abc", {"hello": "世界"}, policy="private", timeout=5,
                           headers={"X-Test": "1"})
    assert reply.ok and reply.status == 200 and '"errcode": 0' in reply.text
    request, = receiver.requests
    assert request.body == {"hello": "世界"} and request.query == {"key": ["abc"]}
    assert request.headers["X-Test"] == "1" and request.headers["Content-Type"] == "application/json"


def test_loopback_is_refused_before_connecting_unless_allowed(receiver):
    with pytest.raises(http.UnsafeURL):
        http.post_json(receiver.url, {}, policy="public", timeout=5)
    assert receiver.requests == []


def test_redirects_are_not_followed(receiver):
    # A 3xx could point at the metadata service: it is an answer, not an instruction.
    receiver.reply(302, "")
    reply = http.post_json(receiver.url, {}, policy="private", timeout=5)
    assert reply.status == 302 and not reply.ok and len(receiver.requests) == 1


def test_a_server_that_never_answers_times_out():
    with socket.socket() as silent:  # accepts connections (backlog), never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        started = time.monotonic()
        with pytest.raises(http.RequestFailed, match="Timeout"):
            http.post_json(f"http://127.0.0.1:{silent.getsockname()[1]}/", {}, policy="private", timeout=0.5)
        assert time.monotonic() - started < 5


def test_bounded_answer_body(receiver):
    receiver.reply(200, "x" * (http.MAX_BODY_BYTES * 4))
    assert len(http.post_json(receiver.url, {}, policy="private", timeout=5).text) == http.MAX_BODY_BYTES
