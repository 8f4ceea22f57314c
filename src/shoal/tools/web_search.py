"""Web search providers for the built-in ``web_search`` tool.

A provider is one small class with ``search(query, n)``; the one shipped talks
to a SearxNG-compatible JSON endpoint (``GET {url}/search?q=...&format=json``
answering ``{"results": [{"title", "url", "content"}, ...]}``), which also
covers self-hosted SearxNG and anything that imitates it. ``--web-search-url``
(``SHOAL_WEB_SEARCH_URL``) picks it; without one the tool is refused with a 400.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from shoal.core.types import SearchSource

SearchResult = SearchSource
"""One result: ``title``, ``url``, ``snippet``."""

DEFAULT_TIMEOUT_S = 10.0


class SearchError(Exception):
    """The provider could not answer (unreachable, bad status, bad body)."""


class SearchProvider(Protocol):
    """Something that searches the web."""

    name: str

    async def search(self, query: str, n: int) -> list[SearchResult]:
        """Up to ``n`` results for ``query``, best first; raises :class:`SearchError`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class SearxngProvider:
    """A SearxNG-compatible JSON search endpoint."""

    name = "searxng"

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S,
                 client: httpx.AsyncClient | None = None) -> None:
        base = url.rstrip("/")
        self.endpoint = base if base.endswith("/search") else base + "/search"
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=True,
                                                    headers={"User-Agent": "shoal-web-search"})

    async def search(self, query: str, n: int) -> list[SearchResult]:
        """GET ``{endpoint}?q=...&format=json`` and keep results that have a URL."""
        try:
            response = await self._client.get(self.endpoint, params={"q": query, "format": "json"})
        except httpx.HTTPError as exc:
            raise SearchError(f"search provider unreachable: {exc}") from exc
        if response.status_code != 200:
            raise SearchError(f"search provider answered HTTP {response.status_code}")
        try:
            data: Any = response.json()
        except ValueError as exc:
            raise SearchError("search provider answered with invalid JSON") from exc
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise SearchError("search provider answer has no 'results' list")
        out: list[SearchResult] = []
        seen: set[str] = set()
        for entry in results:
            if not isinstance(entry, dict):
                continue
            url = str(entry.get("url") or "").strip()
            if not url or url in seen:
                continue
            seen.add(url)
            out.append(SearchResult(url=url, title=str(entry.get("title") or url).strip(),
                                    snippet=str(entry.get("content") or entry.get("snippet") or "").strip()))
            if len(out) >= n:
                break
        return out

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


def provider_from_url(url: str | None) -> SearchProvider | None:
    """The provider for the configured URL (SearxNG-compatible), or None when none is set."""
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"web search URL must start with http:// or https://, got {url!r}")
    return SearxngProvider(url)
