"""Checks of the Kubernetes manifests under deploy/k8s/, each returning the problems it found."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from .checks import K8S_VERSION, PLACEHOLDER, PORT, app_routes, catalog_problems, env_problems, served_model

Doc = dict[str, Any]
WORKLOADS = ("Deployment", "StatefulSet")


def schema_problems(docs: list[Doc]) -> list[str]:
    """Every resource against Kubernetes' own (strict) JSON schema."""
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            problems.append(f"{name}: {getattr(exc, 'message', exc)}")
    return problems


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def container_problems(where: str, pod: Doc, grace_needed: float) -> list[str]:
    """Non-root, resources, probes on the app's routes, the port, and a grace period that covers the drain."""
    problems = []
    ctx = pod.get("securityContext", {})
    if ctx.get("runAsNonRoot") is not True or ctx.get("runAsUser", 0) == 0:
        problems.append(f"{where}: the pod must run as a non-root uid (runAsNonRoot, runAsUser)")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: Shoal needs no Kubernetes API token")
    if pod.get("terminationGracePeriodSeconds", 30) <= grace_needed:
        problems.append(f"{where}: terminationGracePeriodSeconds must exceed preStop + drain ({grace_needed:.0f} s)")
    for container in pod.get("initContainers", []) + pod["containers"]:
        name = f"{where}/{container['name']}"
        sc = container.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False or sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{name}: no privilege escalation, all capabilities dropped")
        if not container.get("resources", {}).get("requests") or "memory" not in container["resources"].get(
                "limits", {}):
            problems.append(f"{name}: resources must request CPU/memory and cap memory")
    for container in pod["containers"]:
        name = f"{where}/{container['name']}"
        args = container.get("args", [])
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        if args[:1] != ["serve"] or args[args.index("--port") + 1] != str(PORT) or ports.get("http") != PORT:
            problems.append(f"{name}: must run `serve --port {PORT}` with containerPort http={PORT}")
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", "/health")):
            get = container.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or path not in app_routes() or get.get("port") not in ("http", PORT):
                problems.append(f"{name}: {probe} must GET {path} on the http port, got {get}")
    return problems


def preStop_seconds(pod: Doc) -> float:
    """The seconds a container's ``preStop: sleep N`` holds the pod before SIGTERM."""
    command = pod["containers"][0].get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return float(command[1]) if command[:1] == ["sleep"] else 0.0


def reference_problems(docs: list[Doc]) -> list[str]:
    """Secrets hold placeholders; every secretKeyRef/configMapKeyRef names an existing key; env names exist."""
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) | d.get("data", {}) for d in by_kind(docs, "Secret")}
    configs = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind(docs, "ConfigMap")}
    problems = [f"Secret/{name}: {key} must be a {PLACEHOLDER} placeholder, never a real secret"
                for name, data in secrets.items() for key, value in data.items() if PLACEHOLDER not in value]
    for doc in docs:
        if doc.get("kind") not in WORKLOADS:
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                for ref, store in (("secretKeyRef", secrets), ("configMapKeyRef", configs)):
                    if ref in source and source[ref]["key"] not in store.get(source[ref]["name"], {}):
                        problems.append(f"{container['name']}: {env['name']} refers to a missing {ref} {source[ref]}")
    return problems


def wiring_problems(docs: list[Doc]) -> list[str]:
    """The gateway's catalog names the engines by their headless Service's DNS names; selectors match."""
    problems: list[str] = []
    engines: dict[str, str | None] = {}
    for sts in by_kind(docs, "StatefulSet"):
        service = next((s for s in by_kind(docs, "Service") if s["metadata"]["name"] == sts["spec"]["serviceName"]),
                       None)
        labels = sts["spec"]["template"]["metadata"]["labels"]
        if service is None or service["spec"].get("clusterIP") != "None":
            problems.append(f"StatefulSet/{sts['metadata']['name']}: its serviceName must be a headless Service")
        elif not service["spec"]["selector"].items() <= labels.items():
            problems.append(f"Service/{service['metadata']['name']}: selector matches no engine pod")
        model = served_model(sts["spec"]["template"]["spec"]["containers"][0]["args"])
        for i in range(sts["spec"].get("replicas", 1)):
            engines[f"{sts['metadata']['name']}-{i}.{sts['spec']['serviceName']}"] = model
        engines[sts["spec"]["serviceName"]] = model  # the headless Service: every engine's address
    for svc in by_kind(docs, "Service"):
        if svc["spec"].get("clusterIP") == "None":
            continue
        selected = [d for d in docs if d.get("kind") in WORKLOADS
                    and svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        if not selected:
            problems.append(f"Service/{svc['metadata']['name']}: selector matches no workload")
    drain = max((float(c.get("data", {}).get("SHOAL_DRAIN_SECONDS", 30)) for c in by_kind(docs, "ConfigMap")),
                default=30.0)
    key_envs: set[str] = set()
    for config in by_kind(docs, "ConfigMap"):
        if "catalog.yaml" in config.get("data", {}):
            issues, key_envs = catalog_problems("ConfigMap catalog.yaml", config["data"]["catalog.yaml"], engines)
            problems += issues
    for doc in docs:
        if doc.get("kind") in WORKLOADS:
            pod = doc["spec"]["template"]["spec"]
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            problems += container_problems(where, pod, preStop_seconds(pod) + drain)
            for container in pod.get("initContainers", []) + pod["containers"]:
                problems += env_problems(f"{where}/{container['name']}",
                                         {e["name"] for e in container.get("env", [])}, key_envs)
    return problems


def k8s_problems(docs: list[Doc]) -> list[str]:
    """Schema first (the rest reads fields the schema guarantees), then references and wiring."""
    return schema_problems(docs) or reference_problems(docs) + wiring_problems(docs)
