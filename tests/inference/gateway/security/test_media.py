"""Media parts (issue 13): a multimodal vLLM fetches image, audio and video URLs from its own host, so a key
holder could make it fetch http://169.254.169.254/ (the cloud metadata service) or anything on the private
network. Media parts reach only engines marked multimodal, URLs only on hosts an administrator listed, and the
engine itself is started with the same list (--allowed-media-domains) and no redirects.

The engine is a raw-socket server behind the real gateway (uvicorn), recording the bytes it receives; the
engine's command line and environment are read from a process the real supervisor started.
"""

import json
import os
import threading

import pytest

from glmadmin.lib import processes
from inference import options, supervisor
from inference.gateway import routing
from inference.models import Engine
from tests.inference.engines.test_admin import errors, form
from tests.inference.engines.test_engine_environment import environ
from tests.inference.engines.test_superuser_boundary import change_url, engine, staff_client  # noqa: F401
from tests.inference.gateway.security.test_malformed_upstream import GOOD, RawEngine
from tests.inference.gateway.test_admission import error_of, make_key, post
from tests.support.processes import free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "vision"
METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJ"
         "RU5ErkJggg==")


class RecordingEngine(RawEngine):
    """The raw engine, keeping every byte the gateway sent it."""

    def __init__(self):
        self.received = bytearray()
        self.received_lock = threading.Lock()
        super().__init__()

    def _recv(self, conn):
        data = RawEngine._recv(conn)
        with self.received_lock:
            self.received += data
        return data


def serve(name: str, **fields) -> RecordingEngine:
    raw = RecordingEngine()
    Engine.objects.create(name=name, port=raw.port, model="/nowhere", served_model_name=MODEL, **fields)
    Engine.objects.filter(name=name).update(state="ready")  # no supervisor runs it: marked ready by hand
    routing.publish()
    return raw


@pytest.fixture
def text_engine(transactional_db):
    raw = serve("text")
    yield raw
    raw.close()


@pytest.fixture
def vision_engine(transactional_db):
    raw = serve("vision", multimodal=True, allowed_media_domains=["images.example.com", "10.0.0.7"])
    yield raw
    raw.close()


def chat(*parts) -> dict:
    return {"model": MODEL, "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, *parts]}]}


def image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def refused(response, code: str, param: str) -> dict:
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param), error
    return error


def forwarded(raw: RecordingEngine, server, plain, body) -> bytes:
    """What the engine received for one request the gateway forwarded."""
    raw.answers.put([GOOD])
    before, start = len(raw.requests), len(raw.received)
    response = post(server, plain, body)
    assert response.status_code == 200, response.text
    assert len(raw.requests) == before + 1
    return bytes(raw.received[start:])


@pytest.mark.parametrize("part", [image("https://images.example.com/cat.png"), image(PIXEL),
                                  {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                                  {"type": "video_url", "video_url": {"url": "https://images.example.com/v.mp4"}}])
def test_media_to_a_text_only_engine_is_refused_naming_the_part(server, text_engine, part):
    _, plain = make_key()
    error = refused(post(server, plain, chat(part)), "media_not_supported", "messages[0].content[1]")
    assert f"'{MODEL}' is not marked as serving a multimodal model" in error["message"]
    assert text_engine.requests == []  # nothing reached the engine
    # The same engine still gets text.
    assert b"what is this?" in forwarded(text_engine, server, plain, chat())


def test_media_on_an_allowed_domain_reaches_a_multimodal_engine(server, vision_engine):
    _, plain = make_key()
    url = "https://images.example.com/cat.png?size=large"
    received = forwarded(vision_engine, server, plain, chat(image(url)))
    head, _, body = received.partition(b"\r\n\r\n")
    assert json.loads(body)["messages"][0]["content"][1] == image(url)
    # data: URLs and inline audio need no fetch; an explicitly listed private address is the administrator's call.
    for part in (image(PIXEL), {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                 image("http://10.0.0.7/scan.png")):
        received = forwarded(vision_engine, server, plain, chat(part))
        assert json.loads(received.partition(b"\r\n\r\n")[2])["messages"][0]["content"][1] == part


@pytest.mark.parametrize("url", [
    METADATA, "http://169.254.169.254./latest/", "http://2852039166/latest/", "http://0xa9fea9fe/latest/",
    "http://0251.0376.0251.0376/", "http://[::ffff:169.254.169.254]/latest/", "http://[fe80::1]/",
    "http://127.0.0.1:8000/v1/models", "http://localhost:6379/", "http://10.0.0.8/", "http://192.168.1.1/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://metadata/", "https://100.100.100.200/",
])
def test_loopback_private_and_link_local_hosts_are_refused_unless_listed(server, vision_engine, url):
    _, plain = make_key()
    error = refused(post(server, plain, chat(image(url))), "media_url_private", "messages[0].content[1].image_url.url")
    assert "unless an administrator lists that exact host" in error["message"]
    assert vision_engine.requests == []


@pytest.mark.parametrize(("url", "code"), [
    ("https://evil.example.net/cat.png", "media_url_not_allowed"),
    ("https://sub.images.example.com/cat.png", "media_url_not_allowed"),  # exact hosts, as vLLM compares them
    ("https://images.example.com.evil.net/cat.png", "media_url_not_allowed"),
    ("file:///etc/passwd", "media_url_refused"),
    ("ftp://images.example.com/cat.png", "media_url_refused"),
    # Parsers disagree on the host of these: the gateway's and vLLM's must never see different hosts.
    ("https://images.example.com@169.254.169.254/", "media_url_refused"),
    ("https://169.254.169.254\\@images.example.com/", "media_url_refused"),
    ("https://images.example.com /cat.png", "media_url_refused"),
    ("https://images.example.com:99999/cat.png", "media_url_refused"),
])
def test_other_hosts_and_schemes_are_refused(server, vision_engine, url, code):
    _, plain = make_key()
    refused(post(server, plain, chat(image(url))), code, "messages[0].content[1].image_url.url")
    assert vision_engine.requests == []


def test_an_empty_list_allows_data_urls_only(server):
    raw = serve("vision", multimodal=True, allowed_media_domains=[])
    try:
        _, plain = make_key()
        error = refused(post(server, plain, chat(image("https://images.example.com/cat.png"))),
                        "media_url_not_allowed", "messages[0].content[1].image_url.url")
        assert "send media as data: URLs" in error["message"]
        forwarded(raw, server, plain, chat(image(PIXEL)))
    finally:
        raw.close()


def test_a_model_with_one_text_only_engine_gets_no_media(server, vision_engine, text_engine):
    # Both serve the model: the request could go to either, so media is refused, not sent to one by luck.
    _, plain = make_key()
    refused(post(server, plain, chat(image("https://images.example.com/cat.png"))), "media_not_supported",
            "messages[0].content[1]")
    assert vision_engine.requests == text_engine.requests == []


def test_an_engine_started_before_media_existed_gets_no_media_until_restarted(server):
    """Marked multimodal in the admin while its process runs without --allowed-media-domains (started before
    glmadmin knew of media): vLLM would fetch any URL and follow redirects, so it stays text-only until restarted."""
    raw = serve("vision", multimodal=True, allowed_media_domains=["images.example.com"])
    try:
        Engine.objects.filter(name="vision").update(pid=os.getpid(), running_config={"port": raw.port})
        routing.publish()
        _, plain = make_key()
        refused(post(server, plain, chat(image("https://images.example.com/cat.png"))), "media_not_supported",
                "messages[0].content[1]")
        assert raw.requests == []
    finally:
        raw.close()


@pytest.mark.parametrize("part", [
    {"type": "image_embeds", "image_embeds": "AAAA"},  # a tensor the engine would load as given
    {"type": "file", "file": {"file_data": "AAAA"}},
    {"type": "image_url", "image_url": {"url": "https://images.example.com/a.png", "uuid": "x"}},
    {"type": "image_url", "image_url": "https://images.example.com/a.png", "extra": 1},
])
def test_parts_never_forwarded_even_to_a_multimodal_engine(server, vision_engine, part):
    _, plain = make_key()
    refused(post(server, plain, chat(part)), "media_not_supported", "messages[0].content[1]")
    assert vision_engine.requests == []


# --- the engine's own command line and environment ------------------------------------------------------------
@pytest.fixture
def recording_runtime(tmp_path, settings):
    """An engine runtime whose "python" writes down the arguments it was started with, then waits."""
    python = tmp_path / "engine-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    argv = tmp_path / "argv"
    python.write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" > {argv}.part && mv {argv}.part {argv}\nexec sleep 600\n')
    python.chmod(0o755)
    settings.ENGINE_PYTHON = str(python)
    return argv


def flag_values(argv: list[str], flag: str) -> list[str]:
    assert argv.count(flag) == 1, argv
    values = argv[argv.index(flag) + 1:]
    return values[:next((i for i, v in enumerate(values) if v.startswith("-")), len(values))]


@pytest.mark.parametrize(("fields", "domains"), [
    ({"multimodal": True, "allowed_media_domains": ["images.example.com", "cdn.example.org"]},
     ["images.example.com", "cdn.example.org"]),
    ({"multimodal": True, "allowed_media_domains": []}, ["invalid"]),  # vLLM reads an empty list as any host
    ({"multimodal": False, "allowed_media_domains": ["images.example.com"]}, ["invalid"]),  # text only
])
def test_the_engine_is_started_with_its_media_domains_and_no_redirects(transactional_db, recording_runtime, fields,
                                                                        domains):
    started = Engine.objects.create(name="mm", port=free_port(), model="/m", served_model_name="m",
                                    env={"VLLM_MEDIA_URL_ALLOW_REDIRECTS": "1"}, **fields)
    supervisor.reconcile(started.pk)
    started.refresh_from_db()
    assert started.pid, started.state_reason
    try:
        wait_for(recording_runtime.exists, 60, "the engine's arguments written down")
        argv = recording_runtime.read_text().split("\0")[:-1]
        assert flag_values(argv, "--allowed-media-domains") == domains
        # The engine's own variables cannot turn redirects back on (a listed host redirecting elsewhere).
        assert environ(started.pid)["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    finally:
        processes.kill_group(started.pid)
    # What the gateway checks is what the engine was started with (its running config).
    assert started.running_config["multimodal"] is fields["multimodal"]
    assert routing.table()["mm"]["media"] == (fields["allowed_media_domains"] if fields["multimodal"] else None)


@pytest.mark.parametrize("args", [
    ["--allowed-media-domains", "169.254.169.254"],
    ["--allowed-media-domains=169.254.169.254"],
    ["--allowed_media_domains", "a.example.com", "169.254.169.254"],
    ["--allowed_media_domains=169.254.169.254"],
    ["--allowed-med", "169.254.169.254"],  # argparse takes an unambiguous abbreviation
    ["--seed", "1", "--allowed-media-domain", "x.example.com"],
])
def test_extra_arguments_cannot_set_the_media_domains(admin_client, engine, args):  # noqa: F811
    response = admin_client.post(change_url(engine), form(extra_args=json.dumps(args)))
    assert response.status_code == 200
    assert "is set by its own field (Allowed media domains)" in errors(response)["extra_args"], errors(response)
    engine.refresh_from_db()
    assert engine.extra_args == []
    with pytest.raises(Exception, match="Allowed media domains"):
        options.validate_extra_args(args)


# --- who may change them ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [{"multimodal": "on"}, {"allowed_media_domains": '["169.254.169.254"]'}])
def test_staff_cannot_mark_an_engine_multimodal_or_list_domains(staff_client, engine, change):  # noqa: F811
    page = staff_client.get(change_url(engine)).content.decode()
    assert 'name="multimodal"' not in page and 'name="allowed_media_domains"' not in page
    response = staff_client.post(change_url(engine), form(**change))
    assert response.status_code == 200
    assert "only a superuser can change this" in errors(response)["__all__"]
    engine.refresh_from_db()
    assert (engine.multimodal, engine.allowed_media_domains) == (False, [])


def test_superuser_marks_an_engine_multimodal_with_its_domains(admin_client, engine):  # noqa: F811
    response = admin_client.post(change_url(engine), form(multimodal="on",
                                                          allowed_media_domains='["images.example.com"]'))
    assert response.status_code == 302, errors(response)
    engine.refresh_from_db()
    assert (engine.multimodal, engine.allowed_media_domains) == (True, ["images.example.com"])


@pytest.mark.parametrize(("value", "text"), [
    ('["*.example.com"]', "no wildcards"),
    ('["https://images.example.com/"]', "without scheme, port or path"),
    ('["Images.Example.com"]', "lower case"),
    ('["invalid"]', "leave the list empty"),
    ('"images.example.com"', "JSON list of host names"),
])
def test_bad_media_domains_are_named(admin_client, engine, value, text):  # noqa: F811
    response = admin_client.post(change_url(engine), form(multimodal="on", allowed_media_domains=value))
    assert response.status_code == 200
    assert text in errors(response).get("allowed_media_domains", ""), errors(response)
