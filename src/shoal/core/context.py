"""Who is asking: the caller's identity and limits, carried along the request path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestContext:
    """The authenticated caller of one request.

    ``owner`` scopes stored responses; ``allowed_models`` (None = all) scopes the
    catalog; ``key`` is the key record the auth layer found (opaque here), for
    limits and metering.
    """

    owner: str | None = None
    key_id: str | None = None
    allowed_models: frozenset[str] | None = None
    endpoint: str = ""
    key: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    """Response headers the request path wants sent (rate-limit state, the serving model)."""
    response_id: str | None = None
    """The id of the response this request makes (Responses API), so its follow-ups find its replica."""
    previous_response_id: str | None = None
    """The response this request continues (Responses API): routing prefers the replica that served it."""

    def may_use(self, model_id: str) -> bool:
        """Whether this caller may use ``model_id``."""
        return self.allowed_models is None or model_id in self.allowed_models
