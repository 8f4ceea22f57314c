"""The local backend: llama.cpp's server, in-process, through xllamacpp.

llama.cpp does the heavy lifting (continuous batching over parallel slots, the
model's Jinja chat template, prompt caching, logprobs, tool-call parsing); this
module only moves requests onto worker threads and chunks back onto the event
loop, and translates between llama.cpp's chunk dicts and Shoal's events.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shoal.backends.local.body import to_llama_body
from shoal.backends.local.params import chat_server_params
from shoal.backends.local.speculative import SpeculationGate, SpeculativeConfig, draft_counts
from shoal.backends.local.twin import SpeculatingTwin, settings_for
from shoal.backends.openai_wire.chunks import ChunkTranslator
from shoal.core.backend import BackendFailure, BaseBackend, ModelCard
from shoal.core.types import Finish, GenerationEvent, GenerationRequest

log = logging.getLogger("shoal.local")

_END = object()


@dataclass(frozen=True)
class LocalModelConfig:
    """How to run one GGUF file."""

    model_id: str
    path: Path
    parallel: int = 4
    ctx_per_slot: int = 4096
    threads: int | None = None
    aliases: tuple[str, ...] = ()
    description: str = ""
    verbose: bool = False
    """Let llama.cpp print its own (very chatty) logs; otherwise only its errors."""
    speculative: SpeculativeConfig | None = None
    """Speculative decoding (a draft model or n-gram lookup); None: plain decoding."""


class LocalBackend(BaseBackend):
    """Serves one GGUF model from this process with llama.cpp."""

    def __init__(self, config: LocalModelConfig) -> None:
        self.config = config
        self.name = f"local:{config.model_id}"
        self.capacity = config.parallel
        self._server: Any = None
        self._twin: SpeculatingTwin | None = None
        self.gate = SpeculationGate(config.speculative) if config.speculative else None
        self._running = 0
        self._spec_running = 0
        self._executor = ThreadPoolExecutor(max_workers=config.parallel, thread_name_prefix="llama")
        self._created = int(time.time())
        self._load_seconds: float | None = None
        # llama.cpp's own HTTP port would otherwise bypass Shoal's keys and limits.
        self.http_api_key = secrets.token_urlsafe(24)

    def load(self) -> float:
        """Load the model (blocking); returns the seconds it took."""
        import xllamacpp

        cfg = self.config
        started = time.perf_counter()
        if cfg.speculative is not None:
            # A second server (the binding cannot switch drafting off per request): requests that
            # should not speculate go to the plain one. It costs a second copy of the weights, which
            # llama.cpp repacks for the CPU into memory of its own (measured: ~0.8 GB for the 1.5B),
            # and it runs in a process of its own (twin.py says why). Both load at once.
            self._twin = SpeculatingTwin(settings_for(cfg.speculative, path=cfg.path, model_id=cfg.model_id,
                                                      ctx_per_slot=cfg.ctx_per_slot, threads=cfg.threads,
                                                      api_key=self.http_api_key, verbose=cfg.verbose))
            self._twin.start()
        try:
            self._server = xllamacpp.Server(chat_server_params(
                cfg.path, cfg.model_id, slots=cfg.parallel, ctx_per_slot=cfg.ctx_per_slot, threads=cfg.threads,
                api_key=self.http_api_key, verbose=cfg.verbose))
            if self._twin is not None:
                self._twin.wait_ready()
        except BaseException:
            if self._twin is not None:
                self._twin.close()
            raise
        self._load_seconds = time.perf_counter() - started
        return self._load_seconds

    @property
    def listening_address(self) -> str:
        """llama.cpp's own loopback HTTP address (an OpenAI-compatible upstream; needs ``http_api_key``)."""
        return str(self._server.listening_address)

    def models(self) -> list[ModelCard]:
        """The one model this backend serves."""
        cfg = self.config
        return [
            ModelCard(
                id=cfg.model_id,
                owned_by="shoal",
                created=self._created,
                context_length=cfg.ctx_per_slot,
                capabilities=("chat", "responses", "streaming", "logprobs", "tools", "prompt_caching"),
                aliases=cfg.aliases,
                description=cfg.description,
                extra={"engine": "llama.cpp", "file": cfg.path.name, "parallel_slots": cfg.parallel},
            )
        ]

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Run ``request`` (on a worker thread, or on the speculating twin) and stream its events."""
        if self._server is None:
            raise BackendFailure("The local model is not loaded.")
        body = to_llama_body(request)
        speculating = self._speculates()
        chunks = self._twin.chunks(body) if speculating and self._twin else self._in_process(body)
        timings: dict[str, Any] = {}
        translator = ChunkTranslator(request)
        self._running += 1
        self._spec_running += speculating
        try:
            async for item in chunks:
                if "error" in item:
                    raise _failure(_error_message(item["error"]), _error_type(item["error"]))
                if "timings" in item:
                    timings = item["timings"]
                for event in translator.feed(item):
                    yield event
            drafted, accepted = draft_counts(timings)
            if speculating and self.gate is not None:
                self.gate.record(drafted, accepted)
            for event in translator.close():
                if isinstance(event, Finish) and drafted:
                    event = replace(event, usage=replace(event.usage, draft_tokens=drafted,
                                                         draft_accepted_tokens=accepted))
                yield event
        finally:
            self._running -= 1
            self._spec_running -= speculating
            await chunks.aclose()

    async def _in_process(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """llama.cpp's streamed chunks for ``body`` from the in-process server, run on a worker thread."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        server = self._server

        def on_chunk(chunk: Any) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            # Returning True tells llama.cpp to stop: that frees the slot.
            return stop.is_set()

        def run() -> None:
            try:
                result = server.handle_chat_completions(body, on_chunk)
                if isinstance(result, dict) and "error" in result:
                    loop.call_soon_threadsafe(queue.put_nowait, result)
            except BaseException as exc:  # noqa: BLE001 - every failure must reach the client
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        worker = loop.run_in_executor(self._executor, run)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    # llama.cpp rejects malformed requests (bad message order, bad schema) with ValueError.
                    raise _failure(str(item), "invalid_request_error" if isinstance(item, ValueError) else "")
                yield item
        finally:
            stop.set()
            if not worker.done():
                # The worker notices ``stop`` at its next token; don't block the loop on it.
                worker.add_done_callback(lambda f: f.exception())

    def _speculates(self) -> bool:
        """Whether the next request goes to the speculating twin (alive, a free slot, the gate open)."""
        spec = self.config.speculative
        if self._twin is None or not self._twin.alive or self.gate is None or spec is None:
            return False
        return self._spec_running < spec.max_streams and self.gate.choose(self._running)

    async def count_tokens(self, request: GenerationRequest) -> int:
        """The prompt tokens of ``request`` as this model sees it: its chat template applied, then tokenized.

        Asks llama.cpp's own loopback port (``/apply-template``, ``/tokenize``): no slot is taken
        and nothing is evaluated. Raises :class:`BackendFailure` if the model is not loaded.
        """
        if self._server is None:
            raise BackendFailure("The local model is not loaded.")
        import httpx

        full = to_llama_body(request)
        body = {k: full[k] for k in ("messages", "tools", "chat_template_kwargs") if k in full}
        headers = {"Authorization": f"Bearer {self.http_api_key}"}
        async with httpx.AsyncClient(base_url=self.listening_address, headers=headers, timeout=30.0) as http:
            applied = await http.post("/apply-template", json=body)
            applied.raise_for_status()
            tokens = await http.post("/tokenize", json={"content": applied.json()["prompt"],
                                                        "add_special": True, "parse_special": True})
            tokens.raise_for_status()
        return len(tokens.json()["tokens"])

    async def health(self) -> dict[str, Any]:
        """``ok`` once loaded."""
        health: dict[str, Any] = {"status": "ok" if self._server is not None else "loading",
                                  "load_seconds": self._load_seconds}
        if self.gate is not None:
            health["speculative"] = self.gate.snapshot()
        return health

    async def aclose(self) -> None:
        """Free the model and the worker threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._server = None
        if self._twin is not None:
            await self._twin.aclose()
            self._twin = None


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _error_type(error: Any) -> str:
    return str(error.get("type", "")) if isinstance(error, dict) else ""


def _failure(message: str, kind: str = "") -> BackendFailure:
    lowered = message.lower()
    if kind == "exceed_context_size_error" or ("context" in lowered and "exceed" in lowered):
        return BackendFailure(message, client_error=True, code="context_length_exceeded")
    if kind == "invalid_request_error" or "expected" in lowered or "invalid" in lowered or "must" in lowered:
        return BackendFailure(message, client_error=True)
    return BackendFailure(message)
