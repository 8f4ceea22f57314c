"""The real Codex CLI (``codex exec``, a custom provider with ``wire_api = "responses"``) against ``shoal serve``.

Runs when a Codex CLI is found: ``$SHOAL_CODEX`` (the ``codex`` executable, as ``.ci/run`` installs it) or
``codex`` on PATH; skipped otherwise. Codex's default request is what this checks: function tools, a
``namespace`` tool, ``web_search`` (no provider here: left out), ``reasoning``, ``include``,
``prompt_cache_key``, ``store: false`` and a prompt of about 8.6k tokens.

Model: the default one (Qwen2.5-Coder-0.5B), one 16k slot. The test model was tried first: Codex's
prompt is past its 8k training context and it rambles until the slot is full (over 7 minutes here),
while the default model answers in a few tokens; its cost is the cold prefill of ~8.6k tokens, about a
minute on 2 idle cores. Codex's stream idle timeout is raised and its retries turned off, so a busy
machine makes the test slower, not a tangle of parallel retried prefills. Everything stays on
127.0.0.1; bounded by CODEX_TIMEOUT_S.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shoal.config import DEFAULT_MODEL
from tests.e2e.conftest import ServerFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CODEX_TIMEOUT_S = 900


def codex_path() -> str | None:
    """The Codex CLI to run, or None."""
    configured = os.environ.get("SHOAL_CODEX")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("codex")


@pytest.mark.skipif(codex_path() is None or shutil.which("node") is None,
                    reason="Codex CLI not installed (set SHOAL_CODEX, or put codex on PATH)")
def test_codex_exec_finishes_a_turn(server_factory: ServerFactory, tmp_path: Path) -> None:
    srv = server_factory("--model", DEFAULT_MODEL, "--parallel", "1", "--ctx-per-slot", "16384")
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'model = "{DEFAULT_MODEL}"\n'
        'model_provider = "shoal"\n'
        "[model_providers.shoal]\n"
        'name = "Shoal"\n'
        f'base_url = "{srv.base_url}"\n'
        'wire_api = "responses"\n'
        'env_key = "SHOAL_API_KEY"\n'
        "stream_idle_timeout_ms = 840000\n"
        "stream_max_retries = 0\n"
    )
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=False)
    env = {**os.environ, "CODEX_HOME": str(home), "SHOAL_API_KEY": "none"}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    done = subprocess.run([str(codex_path()), "exec", "--skip-git-repo-check", "Say hello."], cwd=project,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=CODEX_TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"codex exec failed:\n{output[-4000:]}\nserver log:\n{srv.log_tail()}"
    assert "Input should be" not in output and "ERROR" not in output, output[-4000:]
    assert "left out tool(s) this server cannot run: web_search" in srv.log_text()
