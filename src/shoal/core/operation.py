"""The seam between the request path and what a backend does: an *operation*.

The pipeline admits, routes, limits, meters and fails over every request the same way;
what differs between a text generation and (say) an embedding is only what the request
needs from a deployment, how big it may be, and which backend call runs it. A request
type answers those questions by implementing :class:`Operation`, and a backend serves
the kinds it lists in ``Backend.operations``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shoal.core.backend import Backend


class Operation(Protocol):
    """A request the pipeline can run: its model, what it needs, its size bounds, its backend call."""

    @property
    def kind(self) -> str:
        """The operation's name (``generate``, ``embed``): a backend serves it if it lists it."""
        ...

    @property
    def model(self) -> str:
        """The model, alias or router the caller named."""
        ...

    @property
    def stream(self) -> bool:
        """Whether the caller reads events as they come (then the first-byte deadline binds)."""
        ...

    def needs(self) -> tuple[str, ...]:
        """Capabilities a deployment's card must list to serve it."""
        ...

    def hard_needs(self) -> tuple[str, ...]:
        """The needs no fallback may ignore, even for a model named directly."""
        ...

    def prefers(self) -> tuple[str, ...]:
        """Capabilities that order a router's models without being required (``reasoning``)."""
        ...

    def typical_input_tokens(self) -> int:
        """A likely input size in tokens (what a tokens-per-minute hold reserves)."""
        ...

    def upper_input_tokens(self, context_length: int) -> int:
        """At most this many input tokens (budget reservations), never above ``context_length``."""
        ...

    def max_output_tokens(self, context_length: int) -> int:
        """The most output it can produce on a model with ``context_length`` tokens."""
        ...

    def requested_output_tokens(self) -> int | None:
        """The output cap the caller set, if any."""
        ...

    def run(self, backend: Backend) -> AsyncIterator[Any]:
        """Start it on ``backend``: its events, the last a ``Finish`` carrying the usage."""
        ...
