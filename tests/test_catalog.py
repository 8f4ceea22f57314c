"""The catalog in the config file: parsing, file:line errors, cards with prices, the app serving it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.backends.timeouts import Timeouts as UpstreamTimeouts
from shoal.config import ConfigError, build_settings
from shoal.usage.pricing import PriceTable

GOOD = """
port: 8123
models:
  - smollm2
  - id: fast
    aliases: [f]
    description: a remote model
    context_length: 4096
    capabilities: {tools: true, json_schema: true, vision: false}
    pricing: {input: 0.1, cached_input: 0.01, output: 0.2}
    deployments:
      - type: openai
        base_url: http://127.0.0.1:9/v1
        api_key_env: FAST_KEY
        model: x
      - type: anthropic
        model: claude-x
routers:
  - id: auto
    policy: cheapest
    models: [fast, f]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shoal.yaml"
    path.write_text(text)
    return path


def test_catalog_and_shortcuts_load(tmp_path: Path) -> None:
    settings = build_settings(write(tmp_path, GOOD))
    assert settings.models == ("smollm2",) and settings.port == 8123
    entry = settings.catalog.entry("fast")
    assert entry.capabilities == ("tools", "json_schema")
    assert [d.type for d in entry.deployments] == ["openai", "anthropic"]
    card = entry.card()
    assert {"tools", "json_schema", "chat"} <= set(card.capabilities)
    assert PriceTable().for_card(card).cost(1_000_000, 0, 1_000_000) == pytest.approx(0.3)
    assert settings.catalog.routers[0].spec().policy == "cheapest"


def test_plain_model_list_still_works(tmp_path: Path) -> None:
    settings = build_settings(write(tmp_path, "models: [a.gguf, b.gguf]\n"))
    assert settings.models == ("a.gguf", "b.gguf") and settings.catalog is None


def test_balance_defaults_to_least_outstanding_and_takes_prefix(tmp_path: Path) -> None:
    from shoal.wiring.backends import balance_specs

    settings = build_settings(write(tmp_path, GOOD))
    assert settings.catalog.entry("fast").balance.policy == "least_outstanding"
    short = build_settings(write(tmp_path, GOOD.replace("    deployments:", "    balance: prefix\n    deployments:")))
    assert balance_specs(short)["fast"].policy == "prefix"
    full = build_settings(write(tmp_path, GOOD.replace(
        "    deployments:", "    balance: {policy: prefix, abs_threshold: 8, rel_threshold: 2}\n    deployments:")))
    spec = balance_specs(full)["fast"]
    assert (spec.policy, spec.abs_threshold, spec.rel_threshold) == ("prefix", 8, 2.0)


@pytest.mark.parametrize("text, line, problem", [
    (GOOD.replace("    deployments:", "    balance: round_robin\n    deployments:"), 11, "least_outstanding"),
    (GOOD.replace("    deployments:", "    balance: {policy: prefix, rel_threshold: 0.5}\n    deployments:"), 11,
     "greater than or equal to 1"),
    (GOOD.replace("model: claude-x", "model: claude-x\n        max_tokens: 0"), 18, "greater than or equal to 1"),
    (GOOD.replace("base_url: http://127.0.0.1:9/v1", "base_url: ftp://x"), 13, "http://"),
    (GOOD.replace("vision: false", "telepathy: true"), 9, "unknown capability telepathy"),
    (GOOD.replace("type: openai", "type: mystery"), 12, "mystery"),
    (GOOD.replace("      - type: openai\n        base_url: http://127.0.0.1:9/v1\n", "      - type: openai\n"),
     12, "base_url"),
    (GOOD.replace("base_url: http://127.0.0.1:9/v1", "base_url: http://a/v1\n        base_urls: [http://b/v1]"), 12,
     "give one of base_url, base_urls, discover"),
    (GOOD.replace("base_url: http://127.0.0.1:9/v1", "base_urls: [http://b/v1, ftp://c]"), 13, "http://"),
    (GOOD.replace("base_url: http://127.0.0.1:9/v1", "base_urls: [http://b/v1, http://b/v1]"), 13, "twice"),
    (GOOD.replace("base_url: http://127.0.0.1:9/v1", "discover: {dns: svc, port: 0}"), 13,
     "greater than or equal to 1"),
    (GOOD.replace("[fast, f]", "[fast, nope]"), 19, "unknown model(s) nope"),
    (GOOD.replace("policy: cheapest", "policy: random"), 20, "cheapest"),
    (GOOD.replace("model: x\n", "model: x\n        api: completions\n"), 16, "'chat' or 'responses'"),
    (GOOD.replace("model: x\n", "model: x\n        timeouts: {connect: 0}\n"), 16, "greater than 0"),
    (GOOD.replace("model: x\n", "model: x\n        timeouts: {idle: 3}\n"), 16, "idle"),
])
def test_malformed_catalog_names_file_line_and_problem(tmp_path: Path, text: str, line: int,
                                                       problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        build_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert problem in message


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - id: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+"):
        build_settings(path)


def test_app_serves_catalog_models_and_routers(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from shoal.app import create_app
    from shoal.wiring.backends import catalog_backends

    (tmp_path / "data").mkdir()
    settings = build_settings(write(tmp_path, GOOD.replace("  - smollm2\n", "")), data_dir=tmp_path / "data")
    with TestClient(create_app(settings, backend_factory=catalog_backends), base_url="http://127.0.0.1") as client:
        data = client.get("/v1/models").json()["data"]
    by_id = {m["id"]: m for m in data}
    assert set(by_id) == {"fast", "auto"}
    assert by_id["fast"]["pricing"] == {"input": 0.1, "cached_input": 0.01, "output": 0.2}
    assert by_id["auto"]["router"] == {"policy": "cheapest", "models": ["fast", "f"]}


def test_a_local_deployment_cannot_claim_vision(tmp_path: Path) -> None:
    text = """models:
  - id: local-one
    deployments:
      - type: local
        path: /nowhere/model.gguf
        capabilities: [tools, vision]
"""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        build_settings(path)
    assert str(info.value).startswith(f"{path}:6: ") and "cannot have 'vision'" in str(info.value)


def test_api_picks_the_upstream_endpoint(tmp_path: Path) -> None:
    from shoal.backends.openai_compat import OpenAICompatBackend
    from shoal.backends.openai_responses import OpenAIResponsesBackend
    from shoal.wiring.backends import catalog_backends

    text = GOOD.replace("  - smollm2\n", "").replace(
        "model: x\n", "model: x\n      - type: openai\n        api: responses\n"
                        "        base_url: http://127.0.0.1:9/v1\n        model: x-native\n")
    settings = build_settings(write(tmp_path, text), data_dir=tmp_path)
    assert [getattr(d, "api", None) for d in settings.catalog.entry("fast").deployments] == [
        "chat", "responses", None]
    backends = catalog_backends(settings)
    kinds = [type(getattr(b, "backend", b)) for b in backends]
    assert kinds[:2] == [OpenAICompatBackend, OpenAIResponsesBackend]
    assert [b.path for b in backends[:2]] == ["chat/completions", "responses"]  # type: ignore[attr-defined]


def test_deployment_timeouts_default_to_the_backends_and_reach_it(tmp_path: Path) -> None:
    text = GOOD.replace("model: x\n", "model: x\n        timeouts: {first_byte: 7}\n")
    upstream, _ = build_settings(write(tmp_path, text)).catalog.entry("fast").deployments
    assert upstream.timeouts.upstream() == UpstreamTimeouts(first_byte=7)
    plain = build_settings(write(tmp_path, GOOD)).catalog.entry("fast").deployments[0]
    assert plain.timeouts.upstream() == UpstreamTimeouts()


def test_an_embedding_model_lists_only_embeddings(tmp_path: Path) -> None:
    text = """models:
  - id: embed
    capabilities: [embeddings]
    deployments: [{type: local, path: /nowhere/e.gguf, pooling: cls},
                  {type: openai, base_url: "http://127.0.0.1:1/v1", model: e}]
"""
    entry = build_settings(write(tmp_path, text)).catalog.entry("embed")
    assert entry.embeddings and entry.card().capabilities == ("embeddings",)
    assert entry.deployments[0].pooling == "cls"


@pytest.mark.parametrize(("capabilities", "deployment", "problem"), [
    ("[embeddings, tools]", "{type: local, path: /x.gguf}", "no other capability"),
    ("[embeddings]", "{type: anthropic, model: c}", "local or OpenAI-compatible"),
    ("[embeddings]", "{type: openai, api: responses, base_url: 'http://127.0.0.1:1/v1', model: e}",
     "local or OpenAI-compatible"),
    ("[embeddings]", "{type: local, path: /x.gguf, mode: serverless}", "dedicated"),
    ("[tools]", "{type: local, path: /x.gguf, pooling: mean}", "pooling is for embedding models"),
])
def test_embedding_models_are_checked_at_start(tmp_path: Path, capabilities: str, deployment: str,
                                               problem: str) -> None:
    text = f"models:\n  - id: m\n    capabilities: {capabilities}\n    deployments: [{deployment}]\n"
    with pytest.raises(ConfigError) as info:
        build_settings(write(tmp_path, text))
    assert problem in str(info.value)
