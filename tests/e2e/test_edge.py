"""The edge's request checks against a real ``shoal serve`` (auth off): loopback Host names, JSON bodies."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from .conftest import MODEL_ID, ServerProcess
from .test_errors import CHAT, assert_error

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_web_page_style_post_is_refused(server: ServerProcess, media: str | None) -> None:
    # What a page may send to 127.0.0.1 without the browser's preflight: text/plain, a form, or no type.
    headers = {} if media is None else {"content-type": media}
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for path in ("/chat/completions", "/responses"):
            r = http.post(path, content=json.dumps(CHAT).encode(), headers=headers)
            assert assert_error(r, 415, error_type="invalid_request_error")["code"] == "unsupported_media_type"


def test_a_rebound_host_is_refused_and_loopback_names_answered(server: ServerProcess) -> None:
    with httpx.Client(timeout=30) as http:
        for host in ("evil.example", f"evil.example:{server.port}", "192.168.1.10"):
            r = http.get(f"{server.base_url}/models", headers={"host": host})
            assert assert_error(r, 421)["code"] == "host_not_allowed"
        for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "[::1]"):
            assert http.get(f"{server.base_url}/models", headers={"host": host}).status_code == 200


def test_the_openai_client_still_works(server: ServerProcess) -> None:
    with server.client() as client:
        assert client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}],
                                              max_tokens=2).usage.completion_tokens == 2
        resp = client.responses.create(model=MODEL_ID, input="Hi", max_output_tokens=2)
        client.responses.delete(resp.id)
        with pytest.raises(openai.NotFoundError):  # a body-less POST goes through the edge to its route
            client.responses.cancel(resp.id)
