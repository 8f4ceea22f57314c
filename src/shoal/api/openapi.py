"""The OpenAPI document: FastAPI's, plus the generation routes the edge calls directly.

``POST /v1/chat/completions`` and ``POST /v1/responses`` are plain routes called straight
from the edge (see :mod:`shoal.api.edge`), so FastAPI sees neither their body nor their
answers. They are described here instead, from the same pydantic request models that
validate them, at the cost of nothing per request: the document is built once, on the first
``GET /openapi.json``.

Every answer is documented as Shoal gives it: errors in the OpenAI shape with the statuses the
edge and the handlers use (never FastAPI's 422), generations as JSON or as an event stream.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shoal.protocol.chat import ChatCompletionRequest
from shoal.protocol.responses import ResponsesRequest

REF = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "title": "ErrorResponse",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {
            "message": {"type": "string", "description": "What went wrong, for people."},
            "type": {"type": "string", "description": "e.g. invalid_request_error, authentication_error."},
            "param": {"type": ["string", "null"], "description": "The request field at fault, if one is."},
            "code": {"type": ["string", "null"], "description": "A stable machine-readable code."},
        },
    }},
}

ERRORS: dict[str, str] = {
    "400": "A field is missing, malformed or out of range.",
    "401": "No key, or a key Shoal does not know.",
    "403": "The key may not use this model or resource.",
    "404": "Unknown model, response or route.",
    "413": "The request body is larger than --max-body-bytes.",
    "415": "The request body is not application/json.",
    "421": "With auth off, a Host other than localhost, 127.0.0.1 or [::1].",
    "429": "A rate limit or budget is exhausted (retry-after and ratelimit-* headers say when to retry).",
    "503": "Every slot is busy and the queue is full, or the limits store is unreachable.",
}

CHAT_COMPLETION: dict[str, Any] = {
    "title": "ChatCompletion",
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": ["object", "null"]},
    },
}

RESPONSE: dict[str, Any] = {
    "title": "Response",
    "type": "object",
    "required": ["id", "object", "created_at", "model", "status", "output"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "response"},
        "created_at": {"type": "integer"},
        "model": {"type": "string"},
        "status": {"type": "string"},
        "output": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": ["object", "null"]},
    },
}


EXAMPLE_MODEL = "qwen2.5-coder-0.5b-instruct"

CHAT_EXAMPLES: dict[str, Any] = {
    "hello": {"value": {"model": EXAMPLE_MODEL, "messages": [{"role": "user", "content": "Hello!"}]}},
    "streamed": {"value": {"model": EXAMPLE_MODEL, "stream": True, "stream_options": {"include_usage": True},
                           "messages": [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "Hello!"}], "max_tokens": 16}},
}

RESPONSE_EXAMPLES: dict[str, Any] = {
    "hello": {"value": {"model": EXAMPLE_MODEL, "input": "Hello!"}},
    "streamed": {"value": {"model": EXAMPLE_MODEL, "stream": True, "instructions": "Be brief.",
                           "input": [{"role": "user", "content": "Hello!"}], "max_output_tokens": 16}},
}


def _generation(operation_id: str, summary: str, request: type[BaseModel], answer: str,
                stream: str, examples: dict[str, Any]) -> dict[str, Any]:
    """The path item of one directly called generation route."""
    return {"post": {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["generation"],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": REF.format(model=request.__name__)}, "examples": examples}}},
        "responses": {
            "200": {"description": f"The whole answer, or with `stream: true` {stream}.", "content": {
                "application/json": {"schema": {"$ref": REF.format(model=answer)}},
                "text/event-stream": {"schema": {"type": "string"}},
            }},
            **_error_responses(),
        },
        "security": [{"bearer": []}, {}],
    }}


def _error_responses() -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}
    return {status: {"description": text, "content": error} for status, text in ERRORS.items()}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The whole document: FastAPI's routes, the generation routes, Shoal's error answers."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _, defs = models_json_schema([(ChatCompletionRequest, "validation"), (ResponsesRequest, "validation")],
                                 ref_template=REF)
    schemas.update(defs.get("$defs", {}))
    schemas.update(ErrorResponse=ERROR_SCHEMA, ChatCompletion=CHAT_COMPLETION, Response=RESPONSE)
    # FastAPI's validation schemas describe its 422 answers; Shoal answers 400 in the OpenAI shape.
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", _error_responses()["400"])
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer",
        "description": "A model access key (static or managed); the admin token for /admin. Not needed with auth off.",
    }
    schema["paths"] = {
        "/v1/chat/completions": _generation("createChatCompletion", "Create a chat completion",
                                            ChatCompletionRequest, "ChatCompletion",
                                            "`data:` chunks ending with `data: [DONE]`", CHAT_EXAMPLES),
        "/v1/responses": _generation("createResponse", "Create a model response", ResponsesRequest, "Response",
                                     "semantic events (`event:` + `data:`)", RESPONSE_EXAMPLES),
        **schema.get("paths", {}),
    }
    return schema
