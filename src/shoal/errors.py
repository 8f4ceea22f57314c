"""The error hierarchy and the one place that renders errors as HTTP responses.

Every failure a client can see is a :class:`ShoalError`; its subclasses fix the
HTTP status and the OpenAI error ``type``. The handlers installed by
:func:`install_error_handlers` turn them (and FastAPI's own validation and HTTP
errors) into ``{"error": {"message", "type", "param", "code"}}`` bodies.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("shoal.errors")


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and why (raised at startup, not per request)."""


class ShoalError(Exception):
    """Base class: an error with an HTTP status and an OpenAI-style body."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object of the wire format."""
        return {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }


class InvalidRequestError(ShoalError):
    """400: a field is missing, malformed or out of range."""

    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(ShoalError):
    """401: no key, or a key Shoal does not know."""

    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(ShoalError):
    """403: the key may not use this resource."""

    status_code = 403
    error_type = "permission_error"


class NotFoundError(ShoalError):
    """404: unknown model, response or route."""

    status_code = 404
    error_type = "not_found_error"


class ModelNotFoundError(NotFoundError):
    """404 for a model id that is not served."""

    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.", param="model")


class ConflictError(ShoalError):
    """409: the thing to create exists already (a replica that is already in its set)."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLargeError(ShoalError):
    """413: the request body is larger than the configured limit."""

    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class UnsupportedMediaTypeError(ShoalError):
    """415: a request body that is not ``application/json``."""

    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class MisdirectedRequestError(ShoalError):
    """421: a ``Host`` this server does not answer for (with auth off, only loopback names)."""

    status_code = 421
    error_type = "invalid_request_error"
    default_code = "host_not_allowed"


class RateLimitError(ShoalError):
    """429: a rate limit or budget is exhausted."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class QuotaExceededError(RateLimitError):
    """429: the key has spent its budget for the period (OpenAI's ``insufficient_quota``)."""

    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class OverloadedError(ShoalError):
    """503: every slot is busy and the wait queue is full."""

    status_code = 503
    error_type = "server_error"
    default_code = "overloaded"


class LimitsUnavailableError(ShoalError):
    """503: the shared rate-limit / budget store (Redis) cannot be reached, so limits cannot be enforced."""

    status_code = 503
    error_type = "server_error"
    default_code = "limits_unavailable"


class StorageUnavailableError(ShoalError):
    """503: the database did not take a write the answer depends on (a stored response), so it is not a success."""

    status_code = 503
    error_type = "server_error"
    default_code = "storage_unavailable"


class BackendError(ShoalError):
    """502/500: the engine or upstream failed while generating."""

    status_code = 502
    error_type = "server_error"
    default_code = "backend_error"


class GatewayTimeoutError(ShoalError):
    """504: no deployment started answering within the request's deadline."""

    status_code = 504
    error_type = "server_error"
    default_code = "upstream_timeout"


def error_response(exc: ShoalError) -> JSONResponse:
    """Render a :class:`ShoalError` as its JSON response."""
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status_code, headers=exc.headers)


def _path(loc: Any, body: Any, missing: bool) -> list[str]:
    """The fields of ``loc`` that are in the request body (and the last one, if ``missing``).

    pydantic puts the branch of a union in the location too (``content.parts.0.image_url.url``);
    walking the body keeps only the keys and indexes it has.
    """
    steps = [p for p in loc if p != "body"]
    if not isinstance(body, dict):
        return [str(p) for p in steps]
    path: list[str] = []
    node = body
    for index, step in enumerate(steps):
        if ((isinstance(node, dict) and isinstance(step, str) and step in node)
                or (isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node))):
            node = node[step]
        elif not (missing and isinstance(node, dict) and index == len(steps) - 1):
            continue  # a union branch's label, not a field
        path.append(str(step))
    return path


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Invalid request body.", None
    first = errors[0]
    param = ".".join(_path(first.get("loc", ()), exc.body, first.get("type") == "missing")) or None
    if first.get("type") == "json_invalid":
        return "We could not parse the JSON body of your request: " + str(first.get("msg", "")), None
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if param:
        return f"Invalid value for '{param}': {msg}.", param
    return msg, None


def response_for(exc: Exception) -> JSONResponse:
    """The error response of any exception a request raised (the one mapping, used by every path)."""
    if isinstance(exc, ShoalError):
        return error_response(exc)
    if isinstance(exc, RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(InvalidRequestError(message, param=param))
    if isinstance(exc, StarletteHTTPException):
        cls: type[ShoalError] = {
            404: NotFoundError,
            401: AuthenticationError,
            413: PayloadTooLargeError,
        }.get(exc.status_code, InvalidRequestError)
        err = cls(str(exc.detail))
        err.status_code = exc.status_code
        return error_response(err)
    if _storage_down(exc):
        # A database that cannot be reached is an outage to retry through, not a bug: 503, one line logged.
        log.error("database unavailable: %s", type(exc).__name__)
        return error_response(StorageUnavailableError("The server's database is unavailable. Retry shortly.",
                                                      headers={"retry-after": "1"}))
    log.exception("unhandled error", exc_info=exc)
    return error_response(ShoalError("The server had an error while processing your request."))


def _storage_down(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (not that a statement was wrong)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError, ConnectionError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error raised by the app through the one error shape."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return response_for(exc)

    for kind in (ShoalError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle)
