"""A chat-page answer that ends normally is one success in the gateway's counters and in /metrics, with its
latency: the chat stops reading at [DONE], and that is not a client that went away (HTTP 499)."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from inference.gateway import stats
from tests.inference.chat.test_consumer import HELLO, answer, connected, session_cookie
from tests.support import chat as chat_support
from tests.support.chat import MODEL

# The real engine, as fixtures of this module (started once, adopted by each test's row).
demo_model, engine = chat_support.demo_model, chat_support.engine
no_engine_left_behind = chat_support.no_engine_left_behind

pytestmark = pytest.mark.django_db(transaction=True)


def requests_counted() -> dict[tuple[str, ...], float]:
    """(caller, model, engine, status) -> requests, from the totals behind /metrics."""
    return {tuple(field.split(stats.SEP)[1:]): value for field, value in stats.totals().items()
            if field.startswith("req" + stats.SEP)}


async def test_a_chat_answer_is_one_success_with_its_latency(engine, django_user_model):
    _, cookie = await session_cookie(django_user_model, "counted")
    ws = await connected(cookie)
    await ws.send_json_to({"type": "send", "model": MODEL, "messages": HELLO, "max_tokens": 8})
    _, done = await answer(ws)
    assert done["type"] == "done" and done["finish_reason"] == "length", done
    await ws.disconnect()
    # Counted when the answer's upstream request is closed, before "done" goes to the page.
    assert await database_sync_to_async(requests_counted)() == {("user:counted", MODEL, engine.name, "200"): 1}
    summary = await database_sync_to_async(lambda: stats.summary(stats.last_hour()))()
    row = next(row for row in summary["models"] if row["name"] == MODEL)
    assert (row["requests"], row["errors"]) == (1, 0) and row["tokens"] >= 8
    assert row["p50_duration"] is not None and row["p50_ttfb"] is not None  # latencies of successes only
    metrics = (await database_sync_to_async(Client().get)("/metrics")).content.decode()
    assert (f'glmadmin_gateway_requests_total{{caller="user:counted",engine="{engine.name}",model="{MODEL}",'
            f'status="200"}} 1.0') in metrics
    assert f'glmadmin_gateway_request_seconds_count{{model="{MODEL}"}} 1.0' in metrics
