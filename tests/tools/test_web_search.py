"""The SearxNG-compatible provider against a local stub server, and the citation helpers."""

from __future__ import annotations

import pytest

from shoal.api.responses.web_search_loop import citations, format_results, sources_line
from shoal.core.types import SearchSource
from shoal.tools.web_search import SearchError, SearxngProvider, provider_from_url
from tests.tools.searxng_stub import searxng_stub


async def test_search_returns_results_with_title_url_snippet() -> None:
    with searxng_stub() as stub:
        provider = SearxngProvider(stub.url)
        try:
            results = await provider.search("what is a shoal", 2)
        finally:
            await provider.aclose()
    assert stub.queries == ["what is a shoal"]
    assert results == [SearchSource("https://example.org/shoal", "Shoal (fish)", "A shoal is a group of fish."),
                       SearchSource("https://example.org/schooling", "Schooling", "Schooling fish swim together.")]


async def test_endpoint_may_be_given_with_or_without_search_path() -> None:
    assert SearxngProvider("http://h:1/").endpoint == "http://h:1/search"
    assert SearxngProvider("http://h:1/search").endpoint == "http://h:1/search"


async def test_results_without_url_and_duplicates_are_skipped() -> None:
    with searxng_stub() as stub:
        stub.results = [{"title": "no url"}, {"url": "https://a"}, {"url": "https://a", "title": "dup"}, "junk"]
        provider = SearxngProvider(stub.url)
        try:
            results = await provider.search("q", 5)
        finally:
            await provider.aclose()
    assert results == [SearchSource("https://a", "https://a", "")]


@pytest.mark.parametrize("status", [500, 429])
async def test_bad_status_is_a_search_error(status: int) -> None:
    with searxng_stub() as stub:
        stub.status = status
        provider = SearxngProvider(stub.url)
        try:
            with pytest.raises(SearchError, match=str(status)):
                await provider.search("q", 3)
        finally:
            await provider.aclose()


async def test_unreachable_is_a_search_error() -> None:
    provider = SearxngProvider("http://127.0.0.1:9", timeout=2)
    try:
        with pytest.raises(SearchError, match="unreachable"):
            await provider.search("q", 3)
    finally:
        await provider.aclose()


def test_provider_from_url() -> None:
    assert provider_from_url(None) is None and provider_from_url("") is None
    assert isinstance(provider_from_url("http://127.0.0.1:8888"), SearxngProvider)
    with pytest.raises(ValueError):
        provider_from_url("searx.local")


SOURCES = [SearchSource("https://example.org/shoal", "Shoal"), SearchSource("https://example.org/b/", "B")]


def test_format_results_numbers_them() -> None:
    text = format_results("fish", SOURCES, 3)
    assert "[3] Shoal\nURL: https://example.org/shoal" in text and "[4] B" in text
    assert format_results("fish", [], 1) == 'No results found for "fish".'


def test_citations_for_quoted_urls_and_markers() -> None:
    text = "See https://example.org/shoal and [2]; also https://example.org/b."
    found = citations(text, SOURCES)
    assert [(c.url, text[c.start_index:c.end_index]) for c in found] == [
        ("https://example.org/shoal", "https://example.org/shoal"), ("https://example.org/b/", "[2]"),
        ("https://example.org/b/", "https://example.org/b")]
    assert citations("Nothing cited [9].", SOURCES) == []


def test_sources_line_links_are_annotated() -> None:
    text = "Answer."
    addition, spans = sources_line(text, SOURCES)
    full = text + addition
    assert full == "Answer.\n\nSources: [Shoal](https://example.org/shoal), [B](https://example.org/b/)"
    assert [full[c.start_index:c.end_index] for c in spans] == ["[Shoal](https://example.org/shoal)",
                                                                "[B](https://example.org/b/)"]
