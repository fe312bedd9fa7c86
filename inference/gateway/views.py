"""The API docs: the OpenAPI schema and a page that renders it, with a form to try a request."""

import json

from django.http import JsonResponse
from django.shortcuts import render

from . import openapi, routing


def openapi_json(request):
    return JsonResponse(openapi.schema(), json_dumps_params={"indent": 1})


def docs(request):
    schema = openapi.schema()
    models = sorted(routing.model_states())
    model = models[0] if models else "MODEL"
    operations = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            example = openapi.EXAMPLES.get(path.removeprefix("/v1/"))
            operations.append({
                "id": operation["operationId"], "method": method.upper(), "path": path,
                "summary": operation["summary"], "fields": _fields(body) if body else [],
                "responses": sorted(operation["responses"].items()),
                "example": json.dumps({**example, "model": model}, indent=2) if example else "",
            })
    return render(request, "inference/api_docs.html", {"schema": schema, "operations": operations,
                                                       "models": models})


def _fields(body: dict) -> list[dict]:
    return [{"name": name, "required": name in body.get("required", []),
             "type": spec.get("type") or " or ".join(s.get("type", "?") for s in spec.get("oneOf", [])),
             "description": spec.get("description", "")}
            for name, spec in body["properties"].items()]
