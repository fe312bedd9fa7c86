"""Bodies an API key holder could send to make engines work far beyond one request's share, or fetch
URLs from the GPU host: each is refused with a 400 naming the field, over real HTTP (uvicorn).

No engine is needed: a body that gets past the checks is answered 404 (no engine serves "demo"), so
404 here means "accepted by the checks".
"""

import json

import pytest

from inference.gateway import api, guards
from inference.gateway.errors import GatewayError
from tests.inference.gateway.test_admission import error_of, make_key, post

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
TEXT = {"model": "demo", "prompt": "hi"}


def refused(response, code: str, param: str) -> dict:
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param), error
    return error


def test_a_batch_of_prompts_counts_against_the_n_cap(server):
    # 100,000 one-character prompts × n 4: about 0.5 MB of JSON asking for 400,000 generations.
    _, plain = make_key()
    bomb = post(server, plain, {**TEXT, "prompt": ["x"] * 100_000, "n": 4}, path="/v1/completions")
    error = refused(bomb, "too_many_generations", "prompt")
    assert "100000 prompts" in error["message"] and "at most 4" in error["message"]
    refused(post(server, plain, {**TEXT, "prompt": ["a", "b"], "best_of": 3}, path="/v1/completions"),
            "too_many_generations", "prompt")
    # Within the cap a batch still goes on.
    assert post(server, plain, {**TEXT, "prompt": ["a", "b"], "n": 2}, path="/v1/completions").status_code == 404


def test_a_batch_of_token_id_prompts_counts_against_the_n_cap(server):
    _, plain = make_key()
    bomb = post(server, plain, {**TEXT, "prompt": [[1, 2]] * 10_000, "n": 4}, path="/v1/completions")
    refused(bomb, "too_many_generations", "prompt")
    # One prompt of token ids is one prompt, however long.
    assert post(server, plain, {**TEXT, "prompt": [1, 2] * 1000, "n": 4}, path="/v1/completions").status_code == 404


@pytest.mark.parametrize(("raw", "param", "shown"), [
    (b'{"model": "demo", "prompt": "hi", "temperature": NaN}', "temperature", "NaN"),
    (b'{"model": "demo", "prompt": "hi", "top_p": Infinity}', "top_p", "Infinity"),
    (b'{"model": "demo", "prompt": "hi", "logit_bias": {"5": -Infinity}}', "logit_bias", "-Infinity"),
    # Not a JSON extension at all, but Python reads it as inf.
    (b'{"model": "demo", "prompt": "hi", "frequency_penalty": 1e999}', "frequency_penalty", "1e999"),
])
def test_numbers_that_are_not_finite_are_refused(server, raw, param, shown):
    _, plain = make_key()
    response = post(server, plain, content=raw, path="/v1/completions")
    error = refused(response, "non_finite_number", param)
    assert shown in error["message"]


def test_more_than_four_stop_strings_are_refused(server):
    # Every stop string is matched against the output after every token.
    _, plain = make_key()
    bomb = post(server, plain, {**CHAT, "stop": [f"s{i}" for i in range(20_000)]})
    assert "at most 4" in refused(bomb, "too_many_items", "stop")["message"]
    assert post(server, plain, {**CHAT, "stop": ["a", "b", "c", "d"]}).status_code == 404


def test_logit_bias_is_bounded_in_entries_and_values(server):
    _, plain = make_key()
    bomb = post(server, plain, {**CHAT, "logit_bias": {str(i): 1 for i in range(301)}})
    assert "at most 300" in refused(bomb, "too_many_items", "logit_bias")["message"]
    refused(post(server, plain, {**CHAT, "logit_bias": {"7": 1e6}}), "value_too_large", "logit_bias.7")
    refused(post(server, plain, {**CHAT, "logit_bias": {"7": "high"}}), "invalid_type", "logit_bias.7")
    assert post(server, plain, {**CHAT, "logit_bias": {str(i): -100 for i in range(300)}}).status_code == 404


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}},
    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    {"type": "audio_url", "audio_url": {"url": "http://10.0.0.1/a.wav"}},
    {"type": "video_url", "video_url": {"url": "https://images.example.com/v.mp4"}},
    {"type": "file", "file": {"file_data": "AAAA"}},
    {"type": "image_embeds", "image_embeds": "AAAA"},
    # vLLM treats a part as media by its keys whatever its type, and guesses the type of an untyped one.
    {"type": "text", "text": "look", "image_url": {"url": "http://169.254.169.254/"}},
    {"image_url": "http://169.254.169.254/"},
])
def test_media_parts_are_refused(server, part):
    # No engine serves "demo", so none is marked multimodal (test_media.py has the engines that are).
    _, plain = make_key()
    body = {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, part]}]}
    error = refused(post(server, plain, body), "media_not_supported", "messages[0].content[1]")
    assert "multimodal" in error["message"]
    text_only = {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "see"}]}]}
    assert post(server, plain, text_only).status_code == 404


def tool(i: int, described: str = "") -> dict:
    return {"type": "function", "function": {"name": f"f{i}", "description": described,
                                             "parameters": {"type": "object"}}}


@pytest.mark.parametrize(("field", "value", "code", "small"), [
    ("structured_outputs", {"grammar": "root ::= " + " | ".join(f'"w{i}"' for i in range(20_000))},
     "field_too_large", {"grammar": 'root ::= "yes" | "no"'}),
    ("structured_outputs", {"regex": "(a|b)*" * 10_000}, "field_too_large", {"regex": "[0-9]+"}),
    ("guided_grammar", "root ::= " + "x" * 100_000, "field_too_large", 'root ::= "yes"'),
    ("guided_regex", "(a+)+" * 20_000, "field_too_large", "[ab]+"),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "big", "schema": {
        "type": "object", "properties": {f"p{i}": {"type": "string", "pattern": "^(a|b)+$"} for i in range(3000)}}}},
     "field_too_large", {"type": "json_object"}),
    ("tools", [tool(i, "d" * 5000) for i in range(10)], "field_too_large", [tool(1, "adds")]),
    ("tools", [tool(i) for i in range(2000)], "too_many_items", [tool(i) for i in range(128)]),
])
def test_structured_output_and_tools_are_bounded(server, field, value, code, small):
    _, plain = make_key()
    error = refused(post(server, plain, {**CHAT, field: value}), code, field)
    assert field in error["message"]
    assert post(server, plain, {**CHAT, field: small}).status_code == 404


@pytest.mark.parametrize("field", ["chat_template", "mm_processor_kwargs", "media_io_kwargs", "vllm_xargs",
                                   "request_id", "priority", "kv_transfer_params", "prompt_embeds"])
def test_fields_the_description_does_not_list_are_refused(server, field):
    # chat_template would run a client's Jinja template on the engine; request_id could name another request.
    _, plain = make_key()
    error = refused(post(server, plain, {**CHAT, field: "x"}), "unknown_field", field)
    assert "API docs" in error["message"]


def example(schema: dict):
    """A value of the JSON type the schema describes, within its bounds."""
    kind = (schema.get("oneOf") or [schema])[0].get("type")
    return {"string": "x", "boolean": True, "integer": schema.get("minimum", 1), "number": 0.5, "object": {},
            "array": []}[kind]


@pytest.mark.parametrize("endpoint", api.ENDPOINTS)
def test_the_published_schema_is_what_is_checked(admin_client, endpoint):
    """Every documented field is accepted, and the schema admits nothing else: docs and checks cannot drift."""
    schema = admin_client.get("/api/openapi.json").json()
    body_schema = schema["paths"][f"/v1/{endpoint}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["additionalProperties"] is False
    base = CHAT if endpoint == "chat/completions" else TEXT
    for name, field in body_schema["properties"].items():
        if name not in base:
            guards.validate(endpoint, {**base, name: example(field)})  # raises if refused
    with pytest.raises(GatewayError) as refusal:
        guards.validate(endpoint, {**base, "not_documented": 1})
    assert refusal.value.param == "not_documented"
    assert json.dumps(body_schema["properties"]["stop"]).count('"maxItems": 4') == 1
