"""The chat page in Debian's Chromium, against the real server and a real vLLM engine."""

import re

import pytest
from playwright.sync_api import expect

from tests.support import chat as chat_support
from tests.support.browser import chromium
from tests.support.chat import LONG, MODEL, generated, nothing_held, running
from tests.support.processes import manage, wait_for

pytestmark = [pytest.mark.browser]
PASSWORD = "pw-chat-browser-1234"
engine = chat_support.engine  # the package's one engine (conftest.py), adopted by this test's row

# Counts changes to the streaming answer's text while it is still streaming: tokens, not one final blob.
COUNT_MUTATIONS = """() => {
  window.streamedUpdates = 0;
  new MutationObserver(function (records) {
    records.forEach(function (record) {
      var message = record.target.closest && record.target.closest(".msg-assistant");
      if (message && message.classList.contains("msg-streaming")) window.streamedUpdates += 1;
    });
  }).observe(document.getElementById("chat-log"), {childList: true, subtree: true, characterData: true});
}"""


@pytest.fixture
def long_answers_env(monkeypatch):
    # Read by the server process at start: answers long enough to stop while the engine still generates.
    for name in ("GLMADMIN_CHAT_MAX_TOKENS", "GLMADMIN_GATEWAY_MAX_TOKENS"):
        monkeypatch.setenv(name, str(LONG["max_tokens"]))


@pytest.fixture
def chat_user(django_user_model):
    return django_user_model.objects.create_user("chat-ops", password=PASSWORD)


@pytest.fixture
def browser(engine, chat_user, long_answers_env, server):
    # Users and the engine are made before the browser starts: Playwright's event loop makes the ORM refuse.
    with chromium() as browser:
        yield browser


def chat_page(browser, base):
    page = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    page.goto(f"{base}/chat/")
    page.fill("input[name=username]", "chat-ops")  # the login page first, then back to the chat
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#chat.connected")).to_be_attached()  # the chat websocket is open
    expect(page.locator("#chat-model")).to_have_value(MODEL)
    expect(page.locator("#chat-model-state")).to_have_text("Ready")
    return page


def send(page, text: str, max_tokens: int, temperature: str = "0"):
    page.fill("#chat-max-tokens", str(max_tokens))
    page.fill("#chat-temperature", temperature)
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")


def test_chat_streams_uploads_and_keeps_history(browser, server, engine):
    page = chat_page(browser, server)
    send(page, "hello, engine", 40)
    answer = page.locator(".msg-assistant").last
    expect(page.locator(".msg-streaming")).to_have_count(0, timeout=30_000)
    expect(page.locator("#chat-status")).to_have_text(re.compile(r"^\d+ prompt \+ 40 answer tokens$"))
    assert answer.locator(".msg-text").inner_text().strip()
    # Each answer says how it went, measured in the page: the wait for its first text, then its pace.
    timing = re.compile(r"^first token [\d.]+ m?s · 40 tokens in [\d.]+ m?s · [\d.]+ tokens/s$")
    expect(answer.locator(".msg-meta")).to_have_text(timing)

    # A .txt file goes into the conversation under its name.
    page.set_input_files("#chat-file", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                               "buffer": b"GPU 2 was at 95 % for ten minutes.\n"}])
    upload = page.locator(".msg-file")
    expect(upload).to_contain_text("notes.txt")
    expect(upload).to_contain_text("34 characters added")

    send(page, "what does the file say?", 30, temperature="0.8")
    expect(page.locator(".msg-assistant")).to_have_count(2)
    expect(page.locator(".msg-streaming")).to_have_count(0, timeout=30_000)

    # The history survives a reload (sessionStorage) and is gone after Clear.
    page.reload()
    expect(page.locator("#chat.connected")).to_be_attached()
    expect(page.locator(".msg")).to_have_count(5)
    expect(page.locator(".msg-assistant").first.locator(".msg-meta")).to_have_text(timing)  # kept in the history
    expect(page.locator(".msg-file")).to_contain_text("notes.txt")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#chat-clear")
    expect(page.locator(".msg")).to_have_count(0)
    assert page.evaluate("JSON.parse(sessionStorage.getItem('glmadmin.chat')).messages") == []


def test_stop_mid_stream_aborts_the_engine_request_and_the_next_turn_works(browser, server, engine, chat_user):
    page = chat_page(browser, server)
    page.evaluate(COUNT_MUTATIONS)
    before = generated(engine)
    # 60,000 tokens: the demo engine takes minutes for them, so it is still generating when Stop is pressed.
    send(page, "tell me everything", LONG["max_tokens"], temperature=str(LONG["temperature"]))
    # Tokens are drawn as they arrive, not as one blob at the end: more than one update of the answer while it
    # streams. Not many more: on a loaded 2-core machine vLLM's API server hands the tokens on in bursts
    # seconds apart (measured: 4 bursts in 120 s while the engine generated 24,709 tokens), and the tokens
    # of one burst reach the page as one message.
    def progress():
        return page.evaluate("""() => ({updates: window.streamedUpdates,
            streaming: document.querySelectorAll('.msg-assistant.msg-streaming').length,
            chars: (document.querySelector('.msg-assistant .msg-text') || {textContent: ''}).textContent.length,
            status: document.getElementById('chat-status').textContent,
            notes: [...document.querySelectorAll('.msg-note, .chat-notice')].map(e => e.textContent)})""")

    try:
        wait_for(lambda: progress()["updates"] >= 2, 120, "2 streamed updates of the answer")
    finally:
        print("page:", progress(), "engine running:", running(engine), "generated:", generated(engine) - before)
    state = progress()
    assert (state["streaming"], state["status"], state["notes"]) == (1, "Streaming…", [])  # else: what ended it
    expect(page.locator("#chat-send")).to_be_disabled()
    expect(page.locator("#chat-stop")).to_be_enabled()
    assert running(engine) == 1
    page.locator("#chat-stop").dispatch_event("click")  # a click's actionability checks also wait on frames

    # What the user sees: the answer ends where it was, marked as stopped, and the form is free again.
    stopped = page.locator(".msg-assistant").first
    # A wait for the answer's end, not a time limit: in CI two CPU engines generate on two cores beside the
    # browser, and a page drawing a burst of thousands of tokens has been seen to take over 15 s to get to
    # the server's "done" (it said "Streaming…" throughout; nothing was lost).
    try:
        expect(stopped.locator(".msg-note")).to_have_text("Stopped.", timeout=90_000)
    finally:
        print("after Stop:", progress(), "engine running:", running(engine))
    expect(page.locator(".msg-streaming")).to_have_count(0)
    expect(page.locator("#chat-status")).to_have_text("Stopped.")
    expect(page.locator("#chat-send")).to_be_enabled()
    expect(page.locator("#chat-stop")).to_be_disabled()
    text = stopped.locator(".msg-text").text_content()
    assert text

    # What the operator needs: the engine's request was aborted and the gateway let go of it.
    wait_for(lambda: nothing_held(engine, chat_user), 60, "the engine and gateway let go of the request")
    assert generated(engine) - before < LONG["max_tokens"]  # cut short, not finished

    # The same conversation goes on: the next message is answered in full.
    send(page, "and now briefly?", 5)
    expect(page.locator(".msg-assistant")).to_have_count(2)
    expect(page.locator(".msg-streaming")).to_have_count(0, timeout=30_000)
    expect(page.locator("#chat-status")).to_have_text(re.compile(r"^\d+ prompt \+ 5 answer tokens$"))
    expect(page.locator(".msg-error, .chat-notice-error")).to_have_count(0)
    assert stopped.locator(".msg-text").text_content() == text  # nothing of the stopped answer came later
    turns = page.evaluate("JSON.parse(sessionStorage.getItem('glmadmin.chat')).messages")
    assert [(t["role"], t.get("note")) for t in turns] == [
        ("user", None), ("assistant", "Stopped."), ("user", None), ("assistant", "Cut off at the max tokens limit.")]
    assert turns[1]["content"] == text


def test_red_alert_pause_is_a_calm_notice_and_the_message_is_kept(browser, server):
    page = chat_page(browser, server)
    manage("test_alert", "--level", "red")
    expect(page.locator(".banner-red")).to_be_visible()  # the live page knows
    send(page, "are you there?", 5)
    notice = page.locator(".chat-notice-paused")
    expect(notice).to_contain_text("New requests are paused")
    expect(page.locator("#chat-input")).to_have_value("are you there?")  # back in the box to send later
    expect(page.locator(".msg")).to_have_count(0)
    notice.evaluate("el => { el.dataset.first = 'yes'; }")
    page.press("#chat-input", "Enter")  # tried again while still paused: the notice is renewed, not stacked
    expect(page.locator(".chat-notice-paused:not([data-first])")).to_be_attached()
    expect(notice).to_have_count(1)
    expect(page.locator("#chat-input")).to_have_value("are you there?")

    manage("test_alert", "--clear")
    expect(page.locator(".banner-red")).to_have_count(0)
    page.press("#chat-input", "Enter")
    expect(page.locator(".msg-assistant")).to_have_count(1)
    expect(page.locator(".msg-streaming")).to_have_count(0, timeout=30_000)
    expect(page.locator(".msg-error, .chat-notice-error")).to_have_count(0)
