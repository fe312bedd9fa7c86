"""The request fields the gateway accepts, per endpoint: one description that drives both the checks
(guards.py) and the published schema (openapi.py), so what the docs promise is what is checked.

Each field is an OpenAPI 3.0 schema fragment. guards.py checks the part of the vocabulary used here
(type, oneOf, enum, minimum/maximum, maxItems/maxProperties/maxLength, items, properties,
additionalProperties) plus one extension, x-max-json-bytes: the field's size as JSON, for grammars,
regexes and tool schemas that an engine compiles at a cost growing faster than their size.
A field not listed is refused: a new vLLM option (some fetch URLs, run templates or pick another
request's id) reaches an engine only once someone has listed it here.
"""

import functools
from typing import NamedTuple

from django.conf import settings

from . import media

ENDPOINTS = ("chat/completions", "completions")
REQUIRED = {"chat/completions": ("model", "messages"), "completions": ("model", "prompt")}
# Content parts that carry only text. vLLM treats a part as media by its type or by any media key
# (image_url, audio_url, input_audio, video_url, *_embeds, ...), so both type and keys are checked.
TEXT_PART_TYPES = ("text", "refusal")
TEXT_PART_KEYS = frozenset({"type", "text", "refusal"})
STOP_ENTRIES = 4  # OpenAI's cap: every stop string is matched against the output at every step
LOGIT_BIAS_ENTRIES = 300  # OpenAI's cap
TOOLS = 128  # OpenAI's cap

STRING, BOOLEAN, INTEGER, NUMBER = ({"type": "string"}, {"type": "boolean"}, {"type": "integer"},
                                    {"type": "number"})


class Caps(NamedTuple):
    max_tokens: int
    max_n: int
    prompt_chars: int
    structured_bytes: int


def caps() -> Caps:
    return Caps(settings.GATEWAY_MAX_TOKENS, settings.GATEWAY_MAX_N, settings.GATEWAY_MAX_PROMPT_CHARS,
                settings.GATEWAY_MAX_STRUCTURED_BYTES)


def fields(endpoint: str, cap: Caps | None = None) -> dict[str, dict]:
    """name -> schema of every field the endpoint accepts, with today's caps. Shared: do not change it."""
    return _fields(endpoint, cap or caps())


@functools.lru_cache(maxsize=8)
def _fields(endpoint: str, cap: Caps) -> dict[str, dict]:
    if endpoint == "chat/completions":
        return {"model": _model(), "messages": _messages(cap), **_common(cap), **_chat_only(cap)}
    return {"model": _model(), "prompt": _prompt(cap), **_common(cap), **_completions_only(cap)}


def _model() -> dict:
    return {"type": "string", "description": "A served model name (GET /v1/models)."}


def _messages(cap: Caps) -> dict:
    text_part = {"type": "object", "required": ["type"], "additionalProperties": False, "properties": {
        "type": {"type": "string", "enum": list(TEXT_PART_TYPES)}, "text": STRING, "refusal": STRING}}
    media_parts = [{"type": "object", "required": ["type", kind], "additionalProperties": False, "properties": {
        "type": {"type": "string", "enum": [kind]},
        kind: {"type": "object", "additionalProperties": False, "properties": {key: STRING for key in sorted(keys)}}}}
        for kind, keys in media.PARTS.items()]
    part = {"oneOf": [text_part, *media_parts]}
    message = {"type": "object", "required": ["role"], "properties": {
        "role": {"type": "string", "description": "system, developer, user, assistant or tool."},
        "content": {"nullable": True, "oneOf": [STRING, {"type": "array", "items": part}]}}}
    return {"type": "array", "minItems": 1, "items": message,
            "description": f"At most {cap.prompt_chars} characters of text in all. Image, audio and video parts "
                           "only for a model whose engines are marked as serving a multimodal model: data: URLs "
                           "and input_audio, and http(s) URLs whose host is one of the engine's allowed media "
                           "domains (media_url_not_allowed; loopback, private and link-local hosts: "
                           "media_url_private). File and embedding parts are always refused."}


def _prompt(cap: Caps) -> dict:
    tokens = {"type": "array", "items": INTEGER}
    return {"oneOf": [STRING, {"type": "array", "items": STRING}, tokens, {"type": "array", "items": tokens}],
            "description": f"A string, a list of strings, token ids or lists of token ids; at most "
                           f"{cap.prompt_chars} characters (a token id counts as 4). Each prompt gets n "
                           f"(or best_of) answers: prompts × n at most {cap.max_n}."}


def _bounded(kind: dict, cap: Caps, description: str = "") -> dict:
    """A structured-output or tool field: its JSON at most cap.structured_bytes."""
    return {**kind, "x-max-json-bytes": cap.structured_bytes,
            "description": f"{description}At most {cap.structured_bytes} bytes as JSON.".strip()}


def _common(cap: Caps) -> dict:
    max_tokens = {"type": "integer", "minimum": 1, "maximum": cap.max_tokens,
                  "description": f"At most {cap.max_tokens}; that is also the default."}
    return {
        "stream": {**BOOLEAN, "default": False,
                   "description": "Server-sent events, one chunk per token as the engine makes it."},
        "stream_options": {"type": "object", "additionalProperties": False, "properties": {
            "include_usage": BOOLEAN, "continuous_usage_stats": BOOLEAN}},
        "max_tokens": max_tokens,
        "n": {"type": "integer", "minimum": 1, "maximum": cap.max_n,
              "description": f"Answers to generate, at most {cap.max_n} (best_of likewise)."},
        "temperature": NUMBER, "top_p": NUMBER, "presence_penalty": NUMBER, "frequency_penalty": NUMBER,
        "seed": INTEGER, "user": STRING,
        "stop": {"oneOf": [STRING, {"type": "array", "items": STRING, "maxItems": STOP_ENTRIES}],
                 "description": f"At most {STOP_ENTRIES} strings."},
        "logit_bias": {"type": "object", "maxProperties": LOGIT_BIAS_ENTRIES,
                       "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
                       "description": f"Token id -> bias from -100 to 100; at most {LOGIT_BIAS_ENTRIES} entries."},
        # vLLM's own sampling options.
        "top_k": INTEGER, "min_p": NUMBER, "repetition_penalty": NUMBER,
        "min_tokens": {"type": "integer", "minimum": 0, "maximum": cap.max_tokens},
        "ignore_eos": BOOLEAN, "include_stop_str_in_output": BOOLEAN, "skip_special_tokens": BOOLEAN,
        "spaces_between_special_tokens": BOOLEAN,
        "stop_token_ids": {"type": "array", "items": INTEGER, "maxItems": 64},
        "response_format": _bounded({"type": "object"}, cap, "json_object, or json_schema with a schema. "),
        "structured_outputs": _bounded({"type": "object"}, cap, "vLLM's json, regex, choice or grammar. "),
        # Older vLLM releases' spellings of structured_outputs, still honoured by some engines.
        "guided_json": _bounded({"oneOf": [{"type": "object"}, STRING]}, cap),
        "guided_regex": _bounded(STRING, cap), "guided_grammar": _bounded(STRING, cap),
        "guided_choice": _bounded({"type": "array", "items": STRING}, cap),
    }


def _chat_only(cap: Caps) -> dict:
    return {
        "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": cap.max_tokens,
                                  "description": "The newer name of max_tokens; the same cap."},
        "logprobs": BOOLEAN, "top_logprobs": {"type": "integer", "minimum": 0},
        "tools": _bounded({"type": "array", "items": {"type": "object"}, "maxItems": TOOLS}, cap,
                          f"At most {TOOLS} tools. "),
        "tool_choice": _bounded({"oneOf": [STRING, {"type": "object"}]}, cap),
        "parallel_tool_calls": BOOLEAN,
        "reasoning_effort": STRING, "include_reasoning": BOOLEAN,
        "chat_template_kwargs": _bounded({"type": "object"}, cap, "Options of the model's chat template, "
                                                                  "such as enable_thinking. "),
        "add_generation_prompt": BOOLEAN, "continue_final_message": BOOLEAN, "echo": BOOLEAN,
    }


def _completions_only(cap: Caps) -> dict:
    return {
        "best_of": {"type": "integer", "minimum": 1, "maximum": cap.max_n},
        "logprobs": {"type": "integer", "minimum": 0}, "echo": BOOLEAN, "suffix": STRING,
    }
