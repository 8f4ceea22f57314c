"""A catalog ``hf:`` deployment in a real ``shoal serve``: the GGUF comes from a Hugging Face hub cache, offline.

The small test model is laid into a temporary hub cache exactly as huggingface_hub
lays a download out (a blob named by its sha256, a snapshot symlink, ``refs/main``);
the server runs with ``HF_HUB_CACHE`` pointing at it and ``HF_HUB_OFFLINE=1``, so
it must find the file there without any network, and answers a chat completion.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import CatalogServer, ServerProcess

pytestmark = pytest.mark.e2e

SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(root: Path, model: Path) -> Path:
    """``root`` as a hub cache holding ``model`` as ``shoal-test/smollm2/smollm2.gguf`` (the blob links to it)."""
    repo = root / "models--shoal-test--smollm2"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / SMOLLM2_SHA256).symlink_to(model)  # not copied: 94 MiB
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "smollm2.gguf").symlink_to(Path("..", "..", "blobs", SMOLLM2_SHA256))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return root


@pytest.fixture
def shoal(test_model_path: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    cache = hub_cache(tmp_path / "hub", test_model_path)
    config = tmp_path / "shoal.yaml"
    config.write_text("""
models:
  - id: smol-hf
    context_length: 1024
    capabilities: {tools: true, vision: true}
    deployments:
      - {type: local, hf: shoal-test/smollm2/smollm2.gguf, parallel: 1, ctx_per_slot: 1024}
""")
    server = CatalogServer(test_model_path, tmp_path / "server", ("--config", str(config)),
                           env={"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    try:
        yield server.start()
    finally:
        server.stop()


def test_hf_deployment_served_from_the_hub_cache_offline(shoal: ServerProcess) -> None:
    log = shoal.log_text()
    assert "hf shoal-test/smollm2/smollm2.gguf: from the hub cache" in log
    assert "downloading" not in log
    with shoal.client() as client:
        assert [m.id for m in client.models.list()] == ["smol-hf"]
        # The model may see images elsewhere; its local llama.cpp deployment is text-only.
        capabilities = client.models.retrieve("smol-hf").model_extra["capabilities"]  # type: ignore[index]
        assert "tools" in capabilities and "vision" not in capabilities
        reply = client.chat.completions.create(
            model="smol-hf", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8,
            temperature=0, seed=1)
    assert reply.model == "smol-hf"
    assert reply.choices[0].message.content
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
