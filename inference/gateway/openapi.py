"""The OpenAPI 3 description of the gateway, written by hand: it is small and says what this gateway
checks (its caps and error codes), which no generator would know."""

import copy

from . import api

ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int) -> dict:
    meaning = {400: "Malformed, a field not listed here, or over a cap; `param` names the field.",
               401: "Missing, unknown or revoked key.",
               404: "Unknown model.", 429: "Over the key's requests per minute, tokens per minute or concurrent "
               "requests (see Retry-After).", 502: "The engines could not be reached.",
               503: "New requests are paused (a red alert, such as a full disk) or the model is loading "
                    "(see Retry-After)."}
    return {str(s): {"description": meaning[s], "content": {"application/json": {"schema": ERROR}}} for s in statuses}


def _completion_body(endpoint: str) -> dict:
    """The request body, from the description guards.py checks against (api.py): no field documented but
    refused, none accepted but undocumented."""
    properties = copy.deepcopy(api.fields(endpoint))  # the description is shared: the page must not change it
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": list(api.REQUIRED[endpoint]), "properties": properties,
        "additionalProperties": False}}}}


EXAMPLES = {
    "chat/completions": {"model": "MODEL", "messages": [{"role": "user", "content": "Say hello."}],
                         "max_tokens": 32, "stream": True},
    "completions": {"model": "MODEL", "prompt": "Once upon a time", "max_tokens": 32},
}


def schema() -> dict:
    answer = {"description": "The engine's answer, passed through unchanged: JSON, or `text/event-stream` "
                             "when `stream` is true (chunks as the engine sends them, then `data: [DONE]`).",
              "content": {"application/json": {"schema": {"type": "object"}},
                          "text/event-stream": {"schema": {"type": "string"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "glmadmin OpenAI-compatible API", "version": "1",
                 "description": "Point an OpenAI client at this server's /v1 (base_url) with an API key from "
                                "an administrator. Requests go to a ready engine serving the model, the one "
                                "with the fewest requests in flight. Errors use OpenAI's shape "
                                "`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/v1/chat/completions": {"post": {
                "summary": "Chat completion", "operationId": "createChatCompletion",
                "requestBody": _completion_body("chat/completions"),
                "responses": {"200": answer, **_errors(400, 401, 404, 429, 502, 503)}}},
            "/v1/completions": {"post": {
                "summary": "Text completion", "operationId": "createCompletion",
                "requestBody": _completion_body("completions"),
                "responses": {"200": answer, **_errors(400, 401, 404, 429, 502, 503)}}},
            "/v1/models": {"get": {
                "summary": "Models of ready engines", "operationId": "listModels",
                "responses": {"200": {"description": "The served model names.", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ModelList"}}}}, **_errors(401)}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An API key (sk-glm-…) made in the admin."}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "properties": {
                        "message": {"type": "string"}, "type": {"type": "string"},
                        "param": {"type": "string", "nullable": True},
                        "code": {"type": "string", "nullable": True, "enum": [
                            "requests_paused", "model_loading", "model_not_found", "invalid_api_key",
                            "rate_limit_exceeded", "concurrency_limit_exceeded", "request_too_large",
                            "max_tokens_too_large", "prompt_too_long", "invalid_json", "invalid_type",
                            "missing_field", "upstream_unavailable", "n_too_large", "best_of_too_large",
                            "service_unavailable", "internal_error", "unknown_field", "invalid_value",
                            "value_too_large", "too_many_items", "field_too_large", "non_finite_number",
                            "too_many_generations", "media_not_supported", "media_url_refused",
                            "media_url_private", "media_url_not_allowed", "upstream_timeout",
                            "upstream_malformed"]}}}}},
                "ModelList": {"type": "object", "properties": {
                    "object": {"type": "string", "enum": ["list"]},
                    "data": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"},
                        "owned_by": {"type": "string"}}}}}},
            },
        },
    }
