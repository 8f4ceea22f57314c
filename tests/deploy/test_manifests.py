"""The Dockerfile, deploy/compose.yaml and deploy/k8s/ checked by tooling that runs here (no container runtime).

Each file must pass its schema and the cross-checks against Shoal (routes, settings, catalog parser);
each negative case breaks one thing in a copy and must be caught, so the checks are known to bite.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .checks import compose_problems, dockerfile_problems, env_file_problems
from .k8s_checks import k8s_problems

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def k8s_docs() -> list[dict[str, Any]]:
    return [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def check_compose(doc: dict[str, Any], catalog: str | None = None, haproxy: str | None = None) -> list[str]:
    return compose_problems(doc, catalog if catalog is not None else (DEPLOY / "catalog.yaml").read_text(),
                            haproxy if haproxy is not None else (DEPLOY / "haproxy.cfg").read_text())


def test_dockerfile() -> None:
    assert dockerfile_problems((ROOT / "Dockerfile").read_text()) == []


def test_dockerignore_keeps_secrets_and_bulk_out_of_the_build_context() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", ".env", "**/*.gguf"} <= ignored
    assert not {"src", "pyproject.toml", "README.md"} & ignored  # what `pip install .` needs


def test_compose() -> None:
    assert check_compose(compose()) == []


def test_env_example_holds_placeholders_only() -> None:
    assert env_file_problems((DEPLOY / ".env.example").read_text()) == []
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().split()


def test_k8s() -> None:
    docs = k8s_docs()
    assert {d["kind"] for d in docs} >= {"Deployment", "StatefulSet", "Service", "Secret", "ConfigMap"}
    assert any(d["kind"] == "Service" and d["spec"].get("clusterIP") == "None" for d in docs)  # headless
    assert k8s_problems(docs) == []


def _dockerfile(edit: Callable[[str], str]) -> list[str]:
    return dockerfile_problems(edit((ROOT / "Dockerfile").read_text()))


DOCKERFILE_BREAKS = {
    "runs as root": lambda t: t + "USER root\n",
    "no cache volume": lambda t: t.replace('VOLUME ["/var/cache/shoal/models"]', ""),
    "a baked-in key": lambda t: t.replace("ENV HOME=", "ENV SHOAL_API_KEYS=abcdefghijklmnopqrst HOME="),
    "another port": lambda t: t.replace("EXPOSE 8000", "EXPOSE 9000"),
    "loopback only": lambda t: t.replace('"--host", "0.0.0.0"', '"--host", "127.0.0.1"'),
    "probe on a missing route": lambda t: t.replace("8000/health", "8000/healthz"),
}


@pytest.mark.parametrize("case", DOCKERFILE_BREAKS)
def test_a_broken_dockerfile_is_caught(case: str) -> None:
    assert _dockerfile(DOCKERFILE_BREAKS[case])


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets (or, with ``...``, deletes) ``a/b/0/c`` in a parsed document."""
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
        for p in parents:
            doc = doc[p]
        if value is ...:
            del doc[last]
        else:
            doc[last] = value
    return edit


COMPOSE_BREAKS = {
    "replicas a word": _set("services/shoal/deploy/replicas", "two"),
    "misspelt key": lambda d: d["services"]["shoal"].update(comand=["serve"]),
    "one replica": _set("services/shoal/deploy/replicas", 1),
    "engine on another port": _set("services/engine/command/4", "9000"),
    "unknown setting variable": _set("services/shoal/environment/SHOAL_DATABASE", "x"),
    "grace shorter than the drain": _set("services/shoal/stop_grace_period", "10s"),
    "no load balancer": _set("services/lb", ...),
}


@pytest.mark.parametrize("case", COMPOSE_BREAKS)
def test_a_broken_compose_file_is_caught(case: str) -> None:
    doc = compose()
    COMPOSE_BREAKS[case](doc)
    assert check_compose(doc)


@pytest.mark.parametrize("catalog, haproxy", [
    ("models: [{id: qwen-coder, deployments: [{type: openai, base_url: 'http://nowhere:8000/v1', model: qwen-coder}]}]",
     None),
    ("models: [{id: x, deployments: [{type: openai, base_url: 'http://engine:8000/v1', model: other}]}]", None),
    ("models: [{id: x, deployments: [{type: nope}]}]", None),
    (None, "backend replicas\n    option httpchk GET /readyz\n    server-template shoal 2 shoal:8000\n"),
    (None, "backend replicas\n    option httpchk GET /ready\n    server-template shoal 1 shoal:8000\n"),
])
def test_a_broken_catalog_or_balancer_is_caught(catalog: str | None, haproxy: str | None) -> None:
    assert check_compose(compose(), catalog, haproxy)


def _k8s(kind: str, index: int, edit: Callable[[dict[str, Any]], None]) -> Callable[[list[dict[str, Any]]], None]:
    def apply(docs: list[dict[str, Any]]) -> None:
        edit([d for d in docs if d["kind"] == kind][index])
    return apply


K8S_BREAKS = {
    "port not a number": _k8s("Deployment", 0, _set("spec/template/spec/containers/0/ports/0/containerPort", "http")),
    "no selector": _k8s("Deployment", 0, _set("spec/selector", ...)),
    "misspelt field": _k8s("StatefulSet", 0, _set("spec/template/spec/containers/0/readinesProbe", {})),
    "readiness on a missing route": _k8s("Deployment", 0, _set(
        "spec/template/spec/containers/0/readinessProbe/httpGet/path", "/readyz")),
    "liveness on /ready": _k8s("StatefulSet", 0, _set(
        "spec/template/spec/containers/0/livenessProbe/httpGet/path", "/ready")),
    "root": _k8s("Deployment", 0, _set("spec/template/spec/securityContext/runAsNonRoot", False)),
    "no memory limit": _k8s("StatefulSet", 0, _set("spec/template/spec/containers/0/resources/limits", {})),
    "a real-looking secret": _k8s("Secret", 0, _set("stringData/SHOAL_ADMIN_TOKEN", "s3cr3t-s3cr3t-s3cr3t")),
    "missing secret key": _k8s("Secret", 0, _set("stringData/SHOAL_ENGINE_KEY", ...)),
    "unknown setting variable": _k8s("Deployment", 0, _set("spec/template/spec/containers/0/env/5/name",
                                                           "SHOAL_DRAIN")),
    "grace shorter than the drain": _k8s("Deployment", 0, _set("spec/template/spec/terminationGracePeriodSeconds",
                                                               20)),
    "discovery service not headless": _k8s("Service", 0, _set("spec/clusterIP", "")),
    "the catalog discovers a name no engine has": _k8s("StatefulSet", 0, _set("spec/serviceName", "elsewhere")),
    "port mismatch": _k8s("StatefulSet", 0, _set("spec/template/spec/containers/0/args/4", "9000")),
}


@pytest.mark.parametrize("case", K8S_BREAKS)
def test_a_broken_manifest_is_caught(case: str) -> None:
    docs = copy.deepcopy(k8s_docs())
    K8S_BREAKS[case](docs)
    assert k8s_problems(docs)
