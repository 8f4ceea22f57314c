"""Checks of the deployment files under deploy/ and the Dockerfile, each returning the problems it found.

Schemas come from pip packages (no download at test time): Kubernetes' from ``kubernetes-validate``,
the Compose specification's from ``check-jsonschema``'s vendored copy. The rest cross-checks the files
against Shoal itself: the app's routes, the settings' environment variables, the catalog parser.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from dataclasses import fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from dockerfile_parse import DockerfileParser

from shoal.config import ENV_SETTINGS, ConfigError, Settings, load_file

K8S_VERSION = "1.37"
PORT = 8000
"""The port Shoal listens on in every container."""
MODEL_CACHE = "/var/cache/shoal/models"
SECRET_NAME = re.compile(r"KEY|TOKEN|PASSWORD|SECRET", re.I)
PLACEHOLDER = "CHANGE_ME"
ENV_OUTSIDE_SETTINGS = {"SHOAL_API_KEYS": "api_keys", "SHOAL_HOME": "data_dir", "SHOAL_MODEL_CACHE": "model_cache"}
"""Variables read outside ``build_settings``' table (the key list, the default data dir, the model cache)."""


@cache
def app_routes() -> frozenset[str]:
    """The paths the app answers (building it loads no model: that happens in its lifespan)."""
    from shoal.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp)))
    return frozenset(getattr(route, "path", "") for route in app.routes)


def settings_env() -> dict[str, str]:
    """Every environment variable Shoal reads, with the setting it sets."""
    return {**dict(ENV_SETTINGS), **ENV_OUTSIDE_SETTINGS}


def env_problems(where: str, names: set[str], extra: set[str]) -> list[str]:
    """Names that are neither a Shoal setting's variable nor in ``extra`` (a catalog's ``api_key_env``)."""
    known = settings_env()
    setting_names = {f.name for f in fields(Settings)}
    problems = [f"{where}: {name} is not an environment variable Shoal reads" for name in sorted(names)
                if name.startswith("SHOAL_") and name not in known and name not in extra]
    problems += [f"{where}: {name} maps to no setting" for name in sorted(names & set(known))
                 if known[name] not in setting_names]
    return problems


def flag(args: list[str], name: str) -> str | None:
    """The value of ``--name`` in a command line (``--name value`` or ``--name=value``)."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def catalog_problems(where: str, text: str, upstreams: dict[str, str]) -> tuple[list[str], set[str]]:
    """Parse a catalog with Shoal's own parser; every upstream's host must be one of ``upstreams``
    (host -> the model id its engine serves). Returns the problems and the ``api_key_env`` names."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalog.yaml"
        path.write_text(text)
        try:
            catalog = load_file(path)["catalog"]
        except (ConfigError, KeyError) as exc:
            return [f"{where}: not a catalog Shoal accepts: {exc}"], set()
    problems, key_envs = [], set()
    for model in catalog.models:
        for dep in model.deployments:
            if getattr(dep, "api_key_env", None):
                key_envs.add(dep.api_key_env)
            discover = getattr(dep, "discover", None)
            if discover is not None:  # a DNS name every engine answers to (a headless Service)
                host, port = discover.dns, discover.port
            else:
                url = urlsplit(getattr(dep, "base_url", ""))
                host, port = url.hostname, url.port
            if host not in upstreams:
                problems.append(f"{where}: {model.id} upstream {host} is no engine of this stack")
            elif upstreams[host] != dep.model:
                problems.append(f"{where}: {host} serves {upstreams[host]!r}, not {dep.model!r}")
            elif port != PORT:
                problems.append(f"{where}: {host} listens on {PORT}, catalog says {port}")
    return problems, key_envs


def served_model(args: list[str]) -> str | None:
    """The id a ``shoal serve --model ID=...`` command serves."""
    model = flag(args, "--model")
    return model.split("=", 1)[0] if model else None


# -- Dockerfile ---------------------------------------------------------------------------------------------

def dockerfile_problems(text: str) -> list[str]:
    """Non-root, the model cache a VOLUME, no secrets, the port exposed, served and health-checked."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    steps = [(s["instruction"], s["value"]) for s in parser.structure]
    problems = []
    users = [v for i, v in steps if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("Dockerfile: the last USER must be a non-root user")
    volumes = [p for i, v in steps if i == "VOLUME" for p in (json.loads(v) if v.startswith("[") else v.split())]
    if MODEL_CACHE not in volumes or parser.envs.get("SHOAL_MODEL_CACHE") != MODEL_CACHE:
        problems.append(f"Dockerfile: SHOAL_MODEL_CACHE must be {MODEL_CACHE} and a VOLUME")
    for instruction, value in steps:
        if instruction in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", value) or value.split()[:1]:
                if SECRET_NAME.search(name):
                    problems.append(f"Dockerfile: {instruction} {name} would bake a secret into the image")
    exposed = {p.split("/")[0] for i, v in steps if i == "EXPOSE" for p in v.split()}
    cmd = [json.loads(v) for i, v in steps if i == "CMD"][-1:] or [[]]
    if exposed != {str(PORT)} or flag(cmd[0], "--port") != str(PORT):
        problems.append(f"Dockerfile: EXPOSE {exposed} and CMD --port {flag(cmd[0], '--port')} must both be {PORT}")
    if cmd[0][:1] != ["serve"] or flag(cmd[0], "--host") != "0.0.0.0":
        problems.append("Dockerfile: CMD must be `serve --host 0.0.0.0`")
    health = " ".join(v for i, v in steps if i == "HEALTHCHECK")
    probed = re.findall(r"http://127\.0\.0\.1:(\d+)(/[a-z]+)", health)
    if not probed or probed[0] != (str(PORT), "/health") or "/health" not in app_routes():
        problems.append("Dockerfile: HEALTHCHECK must probe the app's /health on its port")
    if not any(i == "RUN" and re.search(r"pip install (--\S+ )*\.(\s|$)", v) for i, v in steps):
        problems.append("Dockerfile: Shoal must be installed with `pip install .`")
    problems += env_problems("Dockerfile", {n for n in parser.envs if n.startswith("SHOAL_")}, set())
    return problems


# -- Compose ------------------------------------------------------------------------------------------------

@cache
def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, as vendored by check-jsonschema."""
    text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    return dict(json.loads(text))


def compose_problems(doc: dict[str, Any], catalog: str, haproxy: str, replicas: int = 2) -> list[str]:
    """Schema, and the stack's wiring: replicas behind the balancer, the engine, probes, env names."""
    validator = jsonschema.validators.validator_for(compose_schema())(compose_schema())
    problems = [f"compose.yaml: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(doc)]
    if problems:
        return problems
    services = doc["services"]
    if not {"shoal", "engine", "postgres", "redis", "lb"} <= set(services):
        return [f"compose.yaml: services {sorted(services)} lack one of shoal, engine, postgres, redis, lb"]
    shoal, engine = services["shoal"], services["engine"]
    count = shoal.get("deploy", {}).get("replicas", 1)
    template = re.search(r"server-template\s+\S+\s+(\d+)\s+shoal:(\d+)", haproxy)
    if count != replicas or template is None or int(template.group(1)) < count:
        problems.append(f"compose.yaml: {replicas} shoal replicas, all in haproxy.cfg's server-template")
    for name in ("shoal", "engine"):
        args = services[name]["command"]
        if args[0] != "serve" or flag(args, "--port") != str(PORT) or flag(args, "--host") != "0.0.0.0":
            problems.append(f"compose.yaml: {name} must run `serve --host 0.0.0.0 --port {PORT}`")
    if template is not None and int(template.group(2)) != PORT:
        problems.append(f"haproxy.cfg: replicas listen on {PORT}, not {template.group(2)}")
    check = re.search(r"option httpchk GET (\S+)", haproxy)
    if check is None or check.group(1) != "/ready" or "/ready" not in app_routes():
        problems.append("haproxy.cfg: replicas must be checked on GET /ready")
    if flag(shoal["command"], "--config") not in {v.split(":")[1] for v in shoal.get("volumes", [])}:
        problems.append("compose.yaml: shoal's --config file is not mounted")
    catalog_issues, key_envs = catalog_problems("catalog.yaml", catalog, {"engine": served_model(engine["command"])})
    problems += catalog_issues
    for name in ("shoal", "engine", "migrate"):
        problems += env_problems(f"compose.yaml {name}", set(services[name].get("environment", {})), key_envs)
    drain = float(shoal["environment"].get("SHOAL_DRAIN_SECONDS", 30))
    grace = shoal.get("stop_grace_period", "10s")
    if not (grace.endswith("s") and float(grace[:-1]) > drain):
        problems.append(f"compose.yaml: stop_grace_period {grace} must exceed SHOAL_DRAIN_SECONDS {drain}")
    return problems


def env_file_problems(text: str) -> list[str]:
    """An example env file holds placeholders only."""
    return [f".env.example: {line.split('=')[0]} must be a {PLACEHOLDER} placeholder" for line in text.splitlines()
            if "=" in line and not line.startswith("#") and PLACEHOLDER not in line]
