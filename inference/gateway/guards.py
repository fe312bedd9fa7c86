"""Checks of a request body before it goes anywhere: fields, types, sizes and the configured caps.

What is accepted is described once, in api.py (the schema the docs publish is made from the same
description); this module checks a body against it. A field the description does not list is
refused, so every byte an engine receives from a client has been looked at here.
"""

import json
import math

from . import api, media
from .errors import bad_request

ENDPOINTS = api.ENDPOINTS
# Codes of the caps clients already know by name; other values over a maximum are value_too_large.
TOO_LARGE = {"max_tokens": "max_tokens_too_large", "max_completion_tokens": "max_tokens_too_large",
             "n": "n_too_large", "best_of": "best_of_too_large"}
JSON_TYPES = {"string": (str,), "boolean": (bool,), "integer": (int,), "number": (int, float), "object": (dict,),
              "array": (list,)}


class _NonFinite(Exception):
    """NaN, Infinity or a number too large for a float: JSON has none of them, Python's parser accepts them."""


def parsed(raw: bytes):
    """The request body as Python, or GatewayError 400. NaN and Infinity are refused here, anywhere in the
    body: vLLM's parser would accept them too, and a NaN temperature or bias reaches the sampler."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NonFinite as exc:
        field = _non_finite_field(raw)
        where = f"'{field}'" if field else "The request body"
        raise bad_request("non_finite_number", f"{where} holds {exc}: JSON numbers must be finite here.",
                          field) from None
    except ValueError as exc:
        raise bad_request("invalid_json", f"The request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise bad_request("invalid_json", "The request body is nested too deeply to be read.") from None


def _refuse_constant(text: str):
    raise _NonFinite(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise _NonFinite(text)
    return value


_MARK = object()


def _non_finite_field(raw: bytes) -> str | None:
    """The top-level field holding a non-finite number (only on the refusal path: a second parse)."""
    def mark(text):
        value = float(text)
        return value if math.isfinite(value) else _MARK

    try:
        body = json.loads(raw, parse_constant=lambda text: _MARK, parse_float=mark)
    except ValueError:  # broken after the number: the field is still worth naming, but cannot be found
        return None
    if not isinstance(body, dict):
        return None
    return next((name for name, value in body.items() if _holds_mark(value)), None)


def _holds_mark(value) -> bool:
    if value is _MARK:
        return True
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(_holds_mark(item) for item in items)


def validate(endpoint: str, body) -> dict:
    """The body to send upstream (a max_tokens cap added if none was asked), or GatewayError 400."""
    return checked(endpoint, body)[0]


def checked(endpoint: str, body) -> tuple[dict, list[media.Part]]:
    """(validate()'s body, the media parts in it): media parts can only be judged against the engines that
    serve the model (media.check), which a request without them never needs to look at."""
    if not isinstance(body, dict):
        raise bad_request("invalid_type", "The request body must be a JSON object.")
    cap = api.caps()
    fields = api.fields(endpoint, cap)
    for name in api.REQUIRED[endpoint]:
        if body.get(name) is None:
            raise bad_request("missing_field", f"Missing required field '{name}'.", name)
    for name, value in body.items():
        schema = fields.get(name)
        if schema is None:
            raise bad_request("unknown_field", f"'{name}' is not a field this gateway accepts on /v1/{endpoint} "
                                               "(the API docs list them).", name)
        if value is not None and name not in CUSTOM:
            _check(name, value, schema)
    if not body["model"]:
        raise bad_request("missing_field", "'model' must name a model (GET /v1/models lists them).", "model")
    parts: list[media.Part] = []
    if endpoint == "chat/completions":
        _check_prompt_chars("messages", _chat_chars(body["messages"], parts), cap)
    else:
        chars, prompts = _prompt_size(body["prompt"])
        _check_prompt_chars("prompt", chars, cap)
        _check_generations(body, prompts, cap)
    return _capped(body, cap), parts


# --- the generic checks: the part of OpenAPI's vocabulary api.py uses ----------------------------
def _check(name: str, value, schema: dict) -> None:
    schema = _matching(name, value, schema)
    if (choices := schema.get("enum")) is not None and value not in choices:
        raise bad_request("invalid_value", f"'{name}' must be one of {choices}, not {value!r}.", name)
    if isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)):
        _check_number(name, value, schema)
    elif isinstance(value, str):
        _check_size(name, len(value), schema.get("maxLength"), "characters")
    elif isinstance(value, list):
        _check_size(name, len(value), schema.get("maxItems"), "entries")
        if (items := schema.get("items")) is not None:
            for i, item in enumerate(value):
                _check(f"{name}[{i}]", item, items)
    elif isinstance(value, dict):
        _check_size(name, len(value), schema.get("maxProperties"), "entries")
        _check_properties(name, value, schema)
    if (cap := schema.get("x-max-json-bytes")) is not None:
        size = len(json.dumps(value, separators=(",", ":")))
        if size > cap:
            raise bad_request("field_too_large", f"'{name}' is {size} bytes as JSON, at most {cap} are allowed here.",
                              name)


def _matching(name: str, value, schema: dict) -> dict:
    """schema itself, or its oneOf alternative that value's JSON type matches (with the outer keys)."""
    options = schema.get("oneOf", (schema,))
    for option in options:
        if _is(value, option.get("type")):
            return schema if option is schema else {**schema, **option}
    if value is None and schema.get("nullable"):
        return {}
    described = " or ".join(_TYPE_NAMES[option["type"]] for option in options)
    raise bad_request("invalid_type", f"'{name}' must be {described}, not {_json_type(value)}.", name)


def _is(value, json_type: str | None) -> bool:
    if json_type is None:
        return True
    if isinstance(value, bool):  # bool is an int in Python, never in JSON
        return json_type == "boolean"
    return isinstance(value, JSON_TYPES[json_type])


def _check_number(name: str, value, schema: dict) -> None:
    if isinstance(value, float) and not math.isfinite(value):  # from a caller that parsed the JSON itself
        raise bad_request("non_finite_number", f"'{name}' holds {value}: only finite numbers are accepted.", name)
    if (low := schema.get("minimum")) is not None and value < low:
        raise bad_request("invalid_value", f"'{name}' must be at least {low}, not {value}.", name)
    if (high := schema.get("maximum")) is not None and value > high:
        raise bad_request(TOO_LARGE.get(name, "value_too_large"), f"'{name}' is {value}, at most {high} is "
                                                                  "allowed here.", name)


def _check_size(name: str, size: int, cap: int | None, unit: str) -> None:
    if cap is not None and size > cap:
        raise bad_request("too_many_items", f"'{name}' has {size} {unit}, at most {cap} are allowed here.", name)


def _check_properties(name: str, value: dict, schema: dict) -> None:
    properties, others = schema.get("properties", {}), schema.get("additionalProperties", True)
    for key, item in value.items():
        sub = properties.get(key, others)
        if sub is False:
            raise bad_request("unknown_field", f"'{name}.{key}' is not a field this gateway accepts.",
                              f"{name}.{key}")
        if sub is not True and item is not None:
            _check(f"{name}.{key}", item, sub)


# --- the prompt: messages or prompt, checked by hand for clearer answers ------------------------
def _check_prompt_chars(field: str, chars: int, cap: api.Caps) -> None:
    if chars > cap.prompt_chars:
        raise bad_request("prompt_too_long", f"The prompt ('{field}') is too long: {chars} characters, at most "
                                             f"{cap.prompt_chars} are allowed.", field)


def _check_generations(body: dict, prompts: int, cap: api.Caps) -> None:
    """A list of prompts is a batch: every prompt gets n (or best_of) answers, each a whole generation in
    one concurrency slot and one rate-limit tick, so the batch counts against the n cap."""
    each = max(body.get("n") or 1, body.get("best_of") or 1)
    if prompts * each > cap.max_n:
        raise bad_request("too_many_generations", f"'prompt' holds {prompts} prompts and each gets {each} "
                                                  f"answer(s): {prompts * each} generations, at most {cap.max_n} are "
                                                  "allowed in one request (send the rest in more requests).",
                          "prompt")


def _chat_chars(messages, parts: list) -> int:
    if not isinstance(messages, list):
        raise bad_request("invalid_type", f"'messages' must be a list of messages, not {_json_type(messages)}.",
                          "messages")
    if not messages:
        raise bad_request("missing_field", "'messages' must contain at least one message.", "messages")
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
            chars += sum(_part_chars(f"messages[{i}].content[{j}]", part, parts) for j, part in enumerate(content))
        elif content is not None:
            raise bad_request("invalid_type", f"'messages[{i}].content' must be a string or a list of parts, "
                                              f"not {_json_type(content)}.", f"messages[{i}].content")
    return chars


def _part_chars(name: str, part, parts: list) -> int:
    """The length of a text part. A media part the gateway may forward to a multimodal engine is added to
    parts (judged once the engines are known: media.check) and counts no characters; any other part is
    refused: vLLM fetches image, audio and video URLs from the engine's host (a URL inside the private network
    included), and reads a part as media by its keys whatever its type."""
    if isinstance(part, str):
        return len(part)
    if not isinstance(part, dict):
        raise bad_request("invalid_type", f"'{name}' must be a content part object, not {_json_type(part)}.", name)
    kind = part.get("type")
    if kind in api.TEXT_PART_TYPES and not part.keys() - api.TEXT_PART_KEYS:
        text = part.get(kind)
        if not isinstance(text, str):
            raise bad_request("invalid_type", f"'{name}.{kind}' must be a string.", f"{name}.{kind}")
        return len(text)
    if (found := media.part_of(name, part)) is not None:
        parts.append(found)
        return 0
    shown = kind if isinstance(kind, str) else next(iter(part.keys() - api.TEXT_PART_KEYS), "untyped")
    raise bad_request("media_not_supported", f"'{name}': {shown} parts are refused. Text parts, and on an engine "
                                             "marked as serving a multimodal model image_url, audio_url, video_url "
                                             "and input_audio parts, are forwarded; file, embedding and untyped "
                                             "parts never are.", name)


def _prompt_size(prompt) -> tuple[int, int]:
    """(characters, prompts) of a completion's prompt; a token id counts as about four characters."""
    if isinstance(prompt, str):
        return len(prompt), 1
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return sum(len(p) for p in prompt), len(prompt)
        if all(_is_token(p) for p in prompt):
            return 4 * len(prompt), 1
        if all(isinstance(p, list) and p and all(_is_token(t) for t in p) for p in prompt):
            return 4 * sum(len(p) for p in prompt), len(prompt)
    raise bad_request("invalid_type", "'prompt' must be a string, a list of strings, a list of token ids or a "
                                      "list of lists of token ids.", "prompt")


def _is_token(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


CUSTOM = frozenset({"messages", "prompt"})  # checked above, by hand, for answers naming the part at fault


def _capped(body: dict, cap: api.Caps) -> dict:
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        # Without a cap vLLM would generate up to the model's whole context.
        return {**body, "max_tokens": cap.max_tokens}
    return body


_TYPE_NAMES = {"string": "a string", "boolean": "true or false", "integer": "an integer", "number": "a number",
               "object": "an object", "array": "a list"}


def _json_type(value) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
