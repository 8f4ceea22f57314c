"""Console tests: the browser and the ``shoal serve`` the browser tests drive, and a longer hang guard for them.

The browser is Debian's headless Chromium (``/usr/bin/chromium``) driven by Playwright, never a downloaded one.
The browser tests are skipped only when it (or the playwright package) is missing outside CI; with ``CI=true``
they fail instead.
"""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess
from tests.tenancy import ADMIN_TOKEN

HANG_SECONDS = 30.0
BROWSER_HANG_SECONDS = 240.0


@pytest.fixture(autouse=True)
def _hang_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Overrides the suite's guard: the same for the fast tests, longer for each browser test."""
    seconds = BROWSER_HANG_SECONDS if request.node.get_closest_marker("browser") else HANG_SECONDS
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


CHROMIUM = Path(os.environ.get("SHOAL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-default-apps", "--disable-extensions"]
MODEL = "smollm2"
CONFIG = """\
prices:
  smollm2: {input: 1000, cached_input: 100, output: 4000}
models:
  - id: smollm2-catalog
    description: The same small model, declared in the catalog file with JSON-schema output.
    context_length: 1024
    capabilities: [tools, json_schema]
    pricing: {input: 0.05, cached_input: 0.01, output: 0.2}
    deployments:
      - {type: local, path: "MODEL_PATH", parallel: 1}
"""
WAIT_MS = 60_000


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must run the browser tests: .ci/run installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from the system (never a downloaded browser).

    Module-scoped on purpose: playwright's sync API runs an event loop on the main
    thread while it is open, and every asyncio test after it would fail.
    """
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing: pip install -e '.[test]'")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``shoal serve`` with the test model, an admin token and prices (so costs show)."""
    from shoal.backends.local.packaged import default_cache_dir, resolve_model_path

    model_path, _ = resolve_model_path("smollm2-135m", default_cache_dir())
    workdir = tmp_path_factory.mktemp("console")
    config = workdir / "shoal.yaml"
    config.write_text(CONFIG.replace("MODEL_PATH", str(model_path)))
    server = ServerProcess(model_path, workdir, ("--parallel", "2", "--ctx-per-slot", "1024", "--config", str(config)),
                           env={"SHOAL_ADMIN_TOKEN": ADMIN_TOKEN})
    server.start()
    try:
        yield server
    finally:
        server.stop()
        assert ADMIN_TOKEN not in server.log_text(), "the admin token appears in the server log"


@pytest.fixture
def page(browser: Any, srv: ServerProcess) -> Iterator[Any]:
    """A fresh browser context (no cookies) on the console, errors of the page collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=srv.root_url)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("dialog", lambda dialog: dialog.accept())
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], f"errors in the page: {errors}"
