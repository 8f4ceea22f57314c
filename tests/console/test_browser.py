"""The web console in a real headless Chromium (Debian's ``chromium``, driven by Playwright) against a real
``shoal serve`` with the small test model: a streamed chat, a tool call answered in the page, a key created in
the page then used from the ``openai`` client, the usage chart updating after requests, a narrow screen.

The browser and the server are fixtures of conftest.py (skipped only when /usr/bin/chromium or playwright
is missing outside CI; with ``CI=true`` that fails instead). ``SHOAL_CONSOLE_SCREENSHOTS=DIR`` saves a
screenshot of each page into DIR (the ones committed under docs/console/ come from this).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.conftest import ServerProcess
from tests.tenancy import ADMIN_TOKEN

from .conftest import MODEL, WAIT_MS

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHOTS = os.environ.get("SHOAL_CONSOLE_SCREENSHOTS")


def sign_in(page: Any) -> None:
    page.goto("/#catalog")
    page.click("#sign-in-open")
    page.fill("#sign-in-token", ADMIN_TOKEN)
    page.press("#sign-in-token", "Enter")
    page.wait_for_selector("#sign-out:visible")


def shot(page: Any, name: str, full_page: bool = True) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=full_page)


def wait_until(page: Any, function: str, arg: Any = None, timeout: float = WAIT_MS / 1000) -> Any:
    """Poll ``function`` (JavaScript, called with ``arg``) until it returns something truthy.

    Not ``page.wait_for_function``: that evaluates a string, which the console's CSP (rightly) refuses.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(function, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {function}")
        time.sleep(0.1)


def finished_replies(page: Any, n: int) -> None:
    """Wait until ``n`` assistant replies have finished streaming."""
    wait_until(page, """(n) => document.querySelectorAll(
        '#pg-transcript .msg.assistant[aria-busy="false"]').length >= n""", n)


def test_streamed_chat_in_the_playground(page: Any) -> None:
    sign_in(page)
    page.wait_for_selector("#catalog-list .model-card")
    cards = page.locator("#catalog-list .model-card")
    assert cards.count() == 2 and page.locator("#catalog-list [data-deployment]").count() == 2
    assert "$1000.00" in page.inner_text(f"#catalog-list [data-model={MODEL}]")
    assert "healthy" in page.inner_text("#catalog-list [data-deployment]  >> nth=0")
    shot(page, "catalog")
    page.check("#catalog-filter-boxes input[value=json_schema]")
    assert cards.count() == 1 and "JSON-schema output" in cards.first.inner_text()
    page.uncheck("#catalog-filter-boxes input[value=json_schema]")
    assert cards.count() == 2
    page.click(f"#catalog-list [data-model={MODEL}] button:has-text('Try in playground')")
    page.wait_for_selector("#page-playground:visible")
    assert page.input_value("#pg-model") == MODEL
    page.fill("#pg-temperature", "0")
    page.fill("#pg-max-tokens", "48")
    page.fill("#pg-system", "You are a helpful assistant.")
    # Record the answer's length at every change: a streamed reply grows in many steps.
    page.evaluate("""() => {
        window.lengths = [];
        new MutationObserver(() => {
            const answer = document.querySelector('#pg-transcript .msg.assistant .answer');
            if (answer) window.lengths.push(answer.textContent.length);
        }).observe(document.querySelector('#pg-transcript'), {subtree: true, childList: true, characterData: true});
    }""")
    page.fill("#pg-input", "Write a short poem about the sea.")
    page.press("#pg-input", "Control+Enter")
    finished_replies(page, 1)
    lengths = [n for n in page.evaluate("window.lengths") if n > 0]
    steps = sorted(set(lengths))
    assert len(steps) >= 5, f"the answer did not stream token by token: {steps}"
    assert lengths == sorted(lengths), "the answer only grows while it streams"
    reply = page.locator("#pg-transcript .msg.assistant").first
    assert reply.locator(".answer").inner_text().strip()
    stats = reply.locator(".stats").inner_text()
    assert re.search(r"in \d+", stats) and re.search(r"cached \d+", stats) and re.search(r"out \d+", stats), stats
    assert re.search(r"\$\d", stats) and re.search(r"TTFT \d", stats), stats
    shot(page, "playground")
    page.click("#pg-view-code")
    code = page.inner_text("#code-text")
    assert "curl -sN" in code and "$SHOAL_API_KEY" in code and '"Write a short poem about the sea."' in code
    for lang in ("openai", "gradient", "pydo"):
        page.click(f"#code-tabs [data-lang={lang}]")
        text = page.inner_text("#code-text")
        assert 'os.environ["SHOAL_API_KEY"]' in text and '"max_completion_tokens": 48' in text, lang
    page.click("#code-tabs [data-lang=openai]")
    shot(page, "playground-code", full_page=False)
    assert ADMIN_TOKEN not in page.content()
    page.keyboard.press("Escape")


def test_tool_call_answered_in_the_page(page: Any) -> None:
    sign_in(page)
    page.goto("/#playground")
    page.check("input[name=pg-mode][value=responses]")
    page.wait_for_selector(f"#pg-model option[value={MODEL}]", state="attached")
    page.fill("#pg-temperature", "0")
    page.fill("#pg-max-tokens", "32")
    page.click("#pg-tools-box summary")
    page.click("#pg-tools-example")
    page.select_option("#pg-tool-choice", "fn:get_weather")
    bodies: list[dict[str, Any]] = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data or "{}"))
            if r.url.endswith("/v1/responses") else None)
    page.fill("#pg-input", "What is the weather in Paris?")
    page.click("#pg-send")
    card = page.wait_for_selector("#pg-transcript form.tool-call")
    assert card.get_attribute("data-name") == "get_weather"
    arguments = json.loads(card.query_selector("pre").inner_text())
    assert isinstance(arguments.get("city"), str)
    call_id = card.get_attribute("data-call-id")
    assert call_id
    result = '{"city": "Paris", "temperature_c": 21, "sky": "sunny"}'
    card.query_selector("textarea").fill(result)
    card.query_selector("button[type=submit]").click()
    finished_replies(page, 2)
    assert page.locator("#pg-transcript .msg.tool").count() == 1
    assert len(bodies) == 2
    first, second = bodies
    assert first["tool_choice"] == {"type": "function", "name": "get_weather"} and first["stream"] is True
    assert second["tool_choice"] == "auto"
    assert {"type": "function_call_output", "call_id": call_id, "output": result} in second["input"]
    assert any(item.get("type") == "function_call" and item["call_id"] == call_id for item in second["input"])
    assert page.locator("#pg-error").is_hidden()
    assert "out " in page.locator("#pg-transcript .msg.assistant .stats").last.inner_text()
    shot(page, "playground-tools")


def test_key_created_in_the_page_works_with_openai(page: Any, srv: ServerProcess) -> None:
    sign_in(page)
    page.goto("/#keys")
    page.wait_for_selector(f"#key-models option[value={MODEL}]", state="attached")
    page.fill("#key-name", "browser-team")
    page.select_option("#key-models", [MODEL])
    page.fill("#key-rpm", "100")
    page.fill("#key-budget", "5")
    page.click("#key-create")
    secret = page.wait_for_selector("#key-secret:visible").query_selector("#key-secret-value").input_value()
    assert secret.startswith("sk-shoal-")
    row = page.locator("#keys-table tbody tr", has_text="browser-team")
    row.wait_for()
    assert MODEL in row.inner_text() and "100 rpm" in row.inner_text()
    shot(page, "keys")
    page.click("#key-secret-dismiss")
    assert secret not in page.content(), "the key is shown once, then gone from the page"

    client = openai.OpenAI(base_url=srv.base_url, api_key=secret, max_retries=0, timeout=60)
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8)
    assert chat.choices[0].message.content is not None

    row.locator("button:has-text('Revoke')").click()
    row.wait_for(state="detached")  # revoked keys are listed only on request
    page.check("#keys-show-revoked")
    page.wait_for_selector("#keys-table tbody tr:has-text('browser-team') .badge:has-text('revoked')")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8)

    # The revoked key pasted in the playground: the API's error shows in the page, readable.
    page.goto("/#playground")
    page.fill("#pg-key", secret)
    page.press("#pg-key", "Tab")
    page.fill("#pg-input", "hello")
    page.click("#pg-send")
    error = page.wait_for_selector("#pg-error:visible")
    assert "revoked" in error.inner_text() and "HTTP 401" in error.inner_text()
    assert secret not in page.url and secret not in srv.log_text()


def test_usage_chart_updates_after_requests(page: Any, srv: ServerProcess) -> None:
    sign_in(page)
    page.goto("/#usage")
    page.select_option("#usage-range", "24h")
    chart = "#usage-time-chart svg"
    page.wait_for_selector(chart)
    before = float(page.get_attribute(chart, "data-total") or 0)
    with openai.OpenAI(base_url=srv.base_url, api_key=create_key(page, "usage-chart"), max_retries=0) as client:
        for _ in range(2):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8)
    wait_until(page, "([sel, before]) => Number(document.querySelector(sel).dataset.total) > before", [chart, before],
               timeout=20)
    after = float(page.get_attribute(chart, "data-total") or 0)
    assert after > before
    assert "usage-chart" in page.inner_text("#usage-key-table")
    assert page.locator("#usage-time-chart svg rect").count() >= 1
    shot(page, "usage")
    page.select_option("#usage-metric", "cost")
    wait_until(page, "() => document.querySelector('#usage-time-chart svg').ariaLabel.startsWith('Cost')")
    with page.expect_download() as download:
        page.click("#usage-csv")
    csv_text = Path(download.value.path()).read_text()
    header, *rows = csv_text.strip().splitlines()
    assert header.startswith("group_by,group,name,requests,failed,input_tokens")
    assert any(r.startswith("key,") and "usage-chart" in r for r in rows)
    assert any(r.startswith(f"model,{MODEL},") for r in rows)


def create_key(page: Any, name: str) -> str:
    """A key made through the admin API with the page's session (what the Keys page does)."""
    return str(page.evaluate("""async (name) => {
        const session = await (await fetch('/console/session')).json();
        const r = await fetch('/admin/keys', {method: 'POST', headers: {'Content-Type': 'application/json',
            'X-CSRF-Token': session.csrf_token}, body: JSON.stringify({name})});
        return (await r.json()).key;
    }""", name))


def test_narrow_screen_and_keyboard(page: Any) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    sign_in(page)
    for name in ("catalog", "playground", "keys", "usage"):
        page.goto(f"/#{name}")
        page.wait_for_selector(f"#page-{name}:visible")
        time.sleep(0.3)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} scrolls sideways at 375 px ({overflow} px)"
        if name in ("playground", "catalog"):
            shot(page, f"narrow-{name}")
    # Keyboard: the tabs are links in the tab order and open their page with Enter.
    page.goto("/#catalog")
    page.focus("a[data-page=keys]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#page-keys:visible")
    assert page.get_attribute("a[data-page=keys]", "aria-current") == "page"
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement && document.activeElement.tagName")
    assert focused in ("A", "BUTTON", "INPUT", "SELECT", "TEXTAREA", "MAIN")

