"""A scripted test double of the Backend protocol, and a helper to build an app around it."""

from __future__ import annotations

import asyncio
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Union

from fastapi.testclient import TestClient

from shoal.app import create_app
from shoal.core.backend import BaseBackend, ModelCard
from shoal.config import Settings
from shoal.core.types import Finish, GenerationEvent, GenerationRequest, TextDelta, Usage

Item = Union[GenerationEvent, BaseException, asyncio.Event]

CARD = ModelCard(id="test-model", owned_by="shoal", created=1700000000, context_length=4096,
                 capabilities=("chat",), aliases=("test-alias",))


def text_script(*pieces: str, reason: str = "stop", usage: Usage | None = None) -> list[Item]:
    """Text deltas then a Finish."""
    return [*(TextDelta(p) for p in pieces), Finish(reason, usage or Usage(5, len(pieces)))]  # type: ignore[arg-type]


class ScriptedBackend(BaseBackend):
    """Each ``generate()`` replays the next queued script.

    Items are GenerationEvents (yielded), exceptions (raised there) or
    ``asyncio.Event``s (waited on). With no script left it answers "ok".
    """

    def __init__(self, *scripts: list[Item], capacity: int = 1, cards: list[ModelCard] | None = None,
                 name: str = "scripted") -> None:
        self.name = name
        self.capacity = capacity
        self.cards = cards or [CARD]
        self.scripts: deque[list[Item]] = deque(list(s) for s in scripts)
        self.requests: list[GenerationRequest] = []
        self.closed_early: list[bool] = []
        self.finished: list[bool] = []
        self.closed = False

    def reset(self) -> "ScriptedBackend":
        """Forget queued scripts and seen requests (a module-wide backend, between tests)."""
        self.scripts.clear()
        self.requests.clear()
        return self

    def add(self, *items: Item) -> "ScriptedBackend":
        """Queue one more script."""
        self.scripts.append(list(items))
        return self

    def models(self) -> list[ModelCard]:
        return list(self.cards)

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        self.requests.append(request)
        script = self.scripts.popleft() if self.scripts else text_script("ok")
        self.closed_early.append(False)
        self.finished.append(False)
        return self._replay(script, len(self.requests) - 1)

    async def _replay(self, script: list[Item], n: int) -> AsyncIterator[GenerationEvent]:
        try:
            for item in script:
                if isinstance(item, asyncio.Event):
                    await item.wait()
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
            self.finished[n] = True
        except (GeneratorExit, asyncio.CancelledError):
            self.closed_early[n] = True
            raise

    async def health(self) -> dict[str, Any]:
        return {"status": "ok"}

    async def aclose(self) -> None:
        self.closed = True


@contextmanager
def make_app(backend: ScriptedBackend, **overrides: Any) -> Iterator[TestClient]:
    """A TestClient (lifespan running) on an app serving ``backend``, with a throwaway data dir."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(**{"data_dir": Path(tmp), **overrides})
        app = create_app(settings, backend_factory=lambda s: [backend])
        # With auth off the server answers only loopback Host names (TestClient's own is "testserver").
        base_url = "http://testserver" if settings.auth_enabled else "http://127.0.0.1"
        with TestClient(app, base_url=base_url, raise_server_exceptions=False) as client:
            yield client
