"""What every HTTP upstream backend shares: the aiohttp session, timeouts, SSE lines, error mapping.

One :class:`UpstreamHTTP` per backend holds one pooled ``aiohttp.ClientSession``
(created lazily inside the running loop, closed in ``aclose``). Every failure
becomes a :class:`BackendFailure` that says whether another attempt (or another
deployment) may succeed: connect errors, timeouts, 5xx and 429 are retryable;
other 4xx are the request's fault (400 with the upstream's message).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from shoal.aio import Deadlines
from shoal.backends.timeouts import Timeouts
from shoal.core.backend import BackendFailure


@dataclass(frozen=True)
class UpstreamConfig:
    """How to reach one upstream deployment.

    ``api_key_env`` names the environment variable holding the key (the key
    itself never appears in config, logs or reprs). ``model`` is the upstream's
    name of the model.
    """

    base_url: str
    model: str
    api_key_env: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_connections: int = 256
    headers: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)

    def api_key(self) -> str | None:
        """The key, read from the environment at call time."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


def parse_retry_after(value: str | None) -> float | None:
    """``retry-after`` in seconds (a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(body: str) -> str:
    """The ``error.message`` of an OpenAI- or Anthropic-style error body, else the body itself (trimmed)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return body.strip()[:500]


def failure_for_status(status: int, body: str, headers: Any, who: str) -> BackendFailure:
    """The failure for an upstream's non-2xx answer."""
    message = error_message(body) or f"HTTP {status}"
    retry_after = parse_retry_after(headers.get("retry-after") if headers is not None else None)
    if status == 429:
        return BackendFailure(f"{who} is rate limited: {message}", status=status, retryable=True,
                              retry_after=retry_after, code="upstream_rate_limited")
    if status in (401, 403):
        # The deployment's key is wrong: not the caller's fault; another deployment may work.
        return BackendFailure(f"{who} refused Shoal's credentials (HTTP {status}).", status=status,
                              retryable=True, code="upstream_auth")
    if status == 408 or status >= 500:
        return BackendFailure(f"{who} failed (HTTP {status}): {message}", status=status, retryable=True,
                              retry_after=retry_after, code="upstream_error")
    code = "context_length_exceeded" if "context" in message.lower() and (
        "exceed" in message.lower() or "too long" in message.lower()) else None
    return BackendFailure(message, client_error=True, status=status, code=code)


def dropped(who: str, detail: str = "") -> BackendFailure:
    """The failure of a stream that ended before it finished."""
    return BackendFailure(f"{who} closed the stream before it finished{': ' + detail if detail else ''}.",
                          retryable=True, code="upstream_dropped")


class UpstreamHTTP:
    """A pooled HTTP client of one upstream (lazy session, bounded waits)."""

    def __init__(self, config: UpstreamConfig, who: str, auth_headers: dict[str, str]) -> None:
        self.config = config
        self.who = who
        self._auth = auth_headers
        self._session: aiohttp.ClientSession | None = None
        # Every wait for the upstream (headers, each read) is bounded here, not by aiohttp's
        # sock_read, which re-arms an event-loop timer on every packet received.
        self.deadlines = Deadlines()

    @classmethod
    def bearer(cls, config: UpstreamConfig, name: str) -> UpstreamHTTP:
        """The client of deployment ``name``, sending the configured key (if any) as a bearer token."""
        key = config.api_key()
        return cls(config, who=f"upstream {name}", auth_headers={"Authorization": f"Bearer {key}"} if key else {})

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            t = self.config.timeouts
            self._session = aiohttp.ClientSession(
                base_url=None,
                timeout=aiohttp.ClientTimeout(total=None, connect=t.connect, sock_connect=t.connect),
                connector=aiohttp.TCPConnector(limit=self.config.max_connections, ttl_dns_cache=300),
                headers={"Content-Type": "application/json", **self.config.headers, **self._auth},
            )
        return self._session

    def url(self, path: str) -> str:
        """``base_url`` joined with ``path``."""
        return self.config.base_url.rstrip("/") + "/" + path.lstrip("/")

    def post(self, path: str, body: dict[str, Any], *, whole: bool = False) -> "Exchange":
        """POST ``body``: ``async with`` it for the 2xx response; :class:`BackendFailure` otherwise.

        ``whole``: the answer comes in one piece once it is complete, so its headers
        may take up to ``timeouts.total`` rather than ``first_byte``.
        """
        return Exchange(self, self.url(path), orjson.dumps(body), whole)

    def _read_failed(self, exc: BaseException) -> BackendFailure:
        """A failed read of an answer's body: a timeout, or a connection that broke (both retryable)."""
        if isinstance(exc, asyncio.TimeoutError):
            return BackendFailure(f"{self.who} stopped sending.", retryable=True, code="upstream_timeout")
        return dropped(self.who, type(exc).__name__)

    async def json_body(self, response: aiohttp.ClientResponse) -> Any:
        """A complete JSON answer (read within ``timeouts.read``); cut short or not JSON, a dropped answer."""
        try:
            if response.content.is_eof():
                raw = await response.read()  # all here already (a short answer): nothing to time
            else:
                with self.deadlines.limit(self.config.timeouts.read):
                    raw = await response.read()
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise self._read_failed(exc) from exc
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise dropped(self.who, "malformed answer") from exc

    async def reads(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The body as it arrives: the first read within ``timeouts.first_byte``, each later one within ``read``."""
        content = response.content
        deadlines = self.deadlines
        wait, read = self.config.timeouts.first_byte, self.config.timeouts.read
        while True:
            try:
                with deadlines.limit(wait):
                    chunk = await content.readany()
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                raise self._read_failed(exc) from exc
            if not chunk:
                return
            wait = read
            yield chunk

    async def sse(self, response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
        """``(event, data)`` pairs of a server-sent-event stream (``event`` is ``""`` when unnamed).

        Framed from whole reads rather than line by line: an upstream usually
        sends several events per read, and a ``readline`` per line was the
        largest cost of relaying a short answer.
        """
        event = ""
        data: list[str] = []
        rest = b""
        async for chunk in self.reads(response):
            *lines, rest = (rest + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", errors="replace").rstrip("\r")
                if not line:
                    if data:
                        yield event, "\n".join(data)
                    event, data = "", []
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value
        tail = rest.decode("utf-8", errors="replace").rstrip("\r")
        if tail.startswith("data:"):  # a last line without its newline
            data.append(tail[6:] if tail.startswith("data: ") else tail[5:])
        if data:
            yield event, "\n".join(data)

    async def get_json(self, path: str, timeout: float = 5.0) -> Any:
        """GET ``path`` as JSON (health probes); raises :class:`BackendFailure`."""
        session = self._get_session()
        try:
            async with session.get(self.url(path), timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                if response.status >= 300:
                    raise failure_for_status(response.status, await response.text(), response.headers, self.who)
                return await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise BackendFailure(f"Cannot reach {self.who}: {type(exc).__name__}.", retryable=True,
                                 code="upstream_unavailable") from exc

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class Exchange:
    """One POST to an upstream, used as ``async with``: the 2xx response, released at the end.

    The wait for the answer's headers (``first_byte`` for a stream, ``total`` for a
    whole answer) is one entry in the client's :class:`~shoal.aio.Deadlines`; a wait
    that runs out becomes a retryable ``upstream_timeout`` failure.
    """

    __slots__ = ("http", "url", "data", "wait", "response")

    def __init__(self, http: UpstreamHTTP, url: str, data: bytes, whole: bool) -> None:
        self.http = http
        self.url = url
        self.data = data
        timeouts = http.config.timeouts
        self.wait = timeouts.total if whole else timeouts.first_byte
        self.response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        http = self.http
        session = http._get_session()
        try:
            with http.deadlines.limit(self.wait):
                response = await session.post(self.url, data=self.data)
        except asyncio.TimeoutError as exc:
            raise BackendFailure(f"{http.who} sent no answer within {self.wait:g} s.", retryable=True,
                                 code="upstream_timeout") from exc
        except aiohttp.ClientError as exc:
            raise BackendFailure(f"Cannot reach {http.who}: {type(exc).__name__}.", retryable=True,
                                 code="upstream_unavailable") from exc
        if response.status >= 300:
            try:
                try:
                    with http.deadlines.limit(http.config.timeouts.read):
                        text = await response.text(errors="replace")
                except (asyncio.TimeoutError, aiohttp.ClientError):
                    text = ""
            finally:
                response.release()
            raise failure_for_status(response.status, text, response.headers, http.who)
        self.response = response
        return response

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.response is not None:
            self.response.release()
