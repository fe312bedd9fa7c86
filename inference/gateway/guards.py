"""Checks of a request body before it goes anywhere: shape, types and the configured caps.

Only fields the gateway must understand (or that would make an engine fail
obscurely) are checked; everything else passes through to vLLM unchanged.
"""

from django.conf import settings

from .errors import bad_request

ENDPOINTS = ("chat/completions", "completions")

# field -> (accepted Python types, the type's name in messages)
NUMBER = ((int, float), "a number")
INTEGER = ((int,), "an integer")
COMMON = {
    "model": ((str,), "a string"),
    "stream": ((bool,), "true or false"),
    "stream_options": ((dict,), "an object"),
    "max_tokens": INTEGER,
    "n": INTEGER,
    "seed": INTEGER,
    "temperature": NUMBER,
    "top_p": NUMBER,
    "presence_penalty": NUMBER,
    "frequency_penalty": NUMBER,
    "stop": ((str, list), "a string or a list of strings"),
    "user": ((str,), "a string"),
    "logit_bias": ((dict,), "an object"),
}
CHAT = {**COMMON, "messages": ((list,), "a list of messages"), "max_completion_tokens": INTEGER,
        "tools": ((list,), "a list"), "response_format": ((dict,), "an object")}
COMPLETIONS = {**COMMON, "echo": ((bool,), "true or false"), "suffix": ((str,), "a string"),
               "logprobs": INTEGER, "best_of": INTEGER}


def validate(endpoint: str, body) -> dict:
    """The body to send upstream (a max_tokens cap added if none was asked), or GatewayError 400."""
    if not isinstance(body, dict):
        raise bad_request("invalid_type", "The request body must be a JSON object.")
    fields = CHAT if endpoint == "chat/completions" else COMPLETIONS
    required = ("model", "messages") if endpoint == "chat/completions" else ("model", "prompt")
    for name in required:
        if body.get(name) is None:
            raise bad_request("missing_field", f"Missing required field '{name}'.", name)
    for name, (types, described) in fields.items():
        value = body.get(name)
        # bool is an int in Python, never in JSON.
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise bad_request("invalid_type", f"'{name}' must be {described}, not {_json_type(value)}.", name)
    if not body["model"]:
        raise bad_request("missing_field", "'model' must name a model (GET /v1/models lists them).", "model")
    if isinstance(body.get("stop"), list) and not all(isinstance(s, str) for s in body["stop"]):
        raise bad_request("invalid_type", "'stop' must be a string or a list of strings.", "stop")
    chars = _chat_chars(body["messages"]) if endpoint == "chat/completions" else _prompt_chars(body["prompt"])
    if chars > settings.GATEWAY_MAX_PROMPT_CHARS:
        field = "messages" if endpoint == "chat/completions" else "prompt"
        raise bad_request("prompt_too_long", f"The prompt ('{field}') is too long: {chars} characters, at most "
                                             f"{settings.GATEWAY_MAX_PROMPT_CHARS} are allowed.", field)
    for name in ("n", "best_of"):
        _check_many(body, name)
    return _capped(body)


def _check_many(body: dict, name: str) -> None:
    """n and best_of: each is a whole generation (the engine's work grows with it) within one request."""
    value, cap = body.get(name), settings.GATEWAY_MAX_N
    if value is None:
        return
    if value < 1:
        raise bad_request("invalid_type", f"'{name}' must be at least 1, not {value}.", name)
    if value > cap:
        raise bad_request(f"{name}_too_large", f"'{name}' is {value}, at most {cap} is allowed here.", name)


def _capped(body: dict) -> dict:
    cap = settings.GATEWAY_MAX_TOKENS
    asked = [name for name in ("max_tokens", "max_completion_tokens") if body.get(name) is not None]
    for name in asked:
        if body[name] < 1:
            raise bad_request("invalid_type", f"'{name}' must be at least 1, not {body[name]}.", name)
        if body[name] > cap:
            raise bad_request("max_tokens_too_large", f"'{name}' is {body[name]}, at most {cap} is allowed here.",
                              name)
    if not asked:
        # Without a cap vLLM would generate up to the model's whole context.
        return {**body, "max_tokens": cap}
    return body


def _chat_chars(messages: list) -> int:
    chars = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request("invalid_type", f"'messages[{i}]' must be an object with 'role' and 'content'.",
                              f"messages[{i}]")
        if not isinstance(message.get("role"), str):
            raise bad_request("missing_field" if "role" not in message else "invalid_type",
                              f"'messages[{i}].role' must be a string such as \"user\".", f"messages[{i}].role")
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(part.get("text", "")) for part in content
                         if isinstance(part, dict) and isinstance(part.get("text", ""), str))
        elif content is not None:
            raise bad_request("invalid_type", f"'messages[{i}].content' must be a string or a list of parts, "
                                              f"not {_json_type(content)}.", f"messages[{i}].content")
    if not messages:
        raise bad_request("missing_field", "'messages' must contain at least one message.", "messages")
    return chars


def _prompt_chars(prompt) -> int:
    if isinstance(prompt, str):
        return len(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return sum(len(p) for p in prompt)
        # Token ids: about four characters each.
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return 4 * len(prompt)
        if all(isinstance(p, list) and all(isinstance(t, int) for t in p) for p in prompt):
            return 4 * sum(len(p) for p in prompt)
    raise bad_request("invalid_type", "'prompt' must be a string, a list of strings or a list of token ids.",
                      "prompt")


def _json_type(value) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)
