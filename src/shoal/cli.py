"""The ``shoal`` command."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from shoal import cli_admin
from shoal.config import DEFAULT_MODEL, ConfigError, Settings, build_settings

log = logging.getLogger("shoal")


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="serve the Inference API (chat completions, responses, models)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8000)")
    p.add_argument("--model", action="append", dest="models", metavar="PATH_OR_NAME",
                   help="a GGUF path or a packaged model name, optionally ID=...; repeatable "
                        f"(default {DEFAULT_MODEL})")
    p.add_argument("--config", type=Path, help="settings file (YAML)")
    p.add_argument("--api-key", action="append", dest="api_keys", metavar="KEY",
                   help="accept this key (repeatable; also SHOAL_API_KEYS, comma-separated)")
    p.add_argument("--data-dir", type=Path, help="server data directory (default SHOAL_HOME or the user data dir)")
    p.add_argument("--model-cache", type=Path, help="where fetched models are cached (default SHOAL_MODEL_CACHE "
                                                    "or the user cache dir)")
    p.add_argument("--database-url", help="database URL (default: SQLite file in the data dir; or SHOAL_DATABASE_URL, "
                                         "e.g. postgresql://host/db)")
    p.add_argument("--keepalive-seconds", type=float, help="SSE keep-alive comment interval (default 15)")
    p.add_argument("--write-timeout-seconds", type=float,
                   help="drop a stream whose client has read nothing for this long, freeing its slot (default 30)")
    p.add_argument("--parallel", type=int, help="parallel slots per local model (default 4)")
    p.add_argument("--ctx-per-slot", type=int,
                   help="context tokens per slot, capped at the model's context (default 16384)")
    p.add_argument("--threads", type=int, help="CPU threads for llama.cpp (default: all cores)")
    p.add_argument("--max-queue", type=int, help="requests that may wait for a slot before 503 (default 64)")
    p.add_argument("--max-body-bytes", type=int, help="largest accepted request body (default 16 MiB)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level (default info)")
    p.add_argument("--access-log", action="store_true", default=None,
                   help="log every HTTP request, and a line per generation (model, status, tokens, TTFT)")
    p.add_argument("--admin-token", help="enable the admin API (/admin/keys, /admin/usage) with this token "
                                         "(prefer SHOAL_ADMIN_TOKEN: flags show in ps)")
    p.add_argument("--redis-url", help="Redis for rate limits and budgets shared by replicas "
                                       "(default: in-process; or SHOAL_REDIS_URL)")
    p.add_argument("--first-byte-deadline", type=float, metavar="SECONDS",
                   help="longest wait for a streamed answer's first byte across failover, then 504 (default 60)")
    p.add_argument("--max-concurrency-per-key", type=int, metavar="N",
                   help="generations one key may have running or queued at once, then 429 (default 32; 0: no cap)")
    p.add_argument("--drain-seconds", type=float, metavar="SECONDS",
                   help="on SIGTERM, how long requests in flight may take to finish before they are cut "
                        "(default 30; or SHOAL_DRAIN_SECONDS)")
    p.add_argument("--web-search-url", help="SearxNG-compatible JSON search endpoint for the built-in web_search "
                                            "tool (or SHOAL_WEB_SEARCH_URL; default: tool off)")


def banner(settings: Settings, model_ids: list[str], contexts: dict[str, tuple[int, int]] | None = None) -> list[str]:
    """The status lines printed once the server is ready.

    ``contexts`` maps a local model's id to its (parallel slots, context tokens per slot): a prompt
    longer than a slot's context is refused, so the banner says it plainly.
    """
    key = "$SHOAL_API_KEY" if settings.auth_enabled else "none"
    first = model_ids[0] if model_ids else "MODEL"
    lines = [
        f"Shoal ready: serving {', '.join(model_ids)} at {settings.base_url}",
        *(f"context: {model} has {slots} parallel slot(s) of {ctx} tokens each (a prompt plus its answer must fit "
          "in one; --ctx-per-slot / --parallel)" for model, (slots, ctx) in (contexts or {}).items()),
        f"console: {settings.base_url[:-len('/v1')]}/",
        "auth: " + (f"on ({len(settings.api_keys)} static key(s)"
                    + (", managed keys, admin API" if settings.admin_token else "") + ")" if settings.auth_enabled
                    else "OFF (no API keys set; listening on loopback only)"),
        f"try: curl -s {settings.base_url}/chat/completions -H 'Content-Type: application/json'"
        + (f" -H \"Authorization: Bearer {key}\"" if settings.auth_enabled else "")
        + f" -d '{{\"model\": \"{first}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'",
    ]
    return lines


def local_contexts(cards: list[Any]) -> dict[str, tuple[int, int]]:
    """(parallel slots, context tokens per slot) of every local model among ``cards``, by model id."""
    return {c.id: (int(c.extra["parallel_slots"]), int(c.context_length)) for c in cards
            if c.extra.get("engine") == "llama.cpp" and "parallel_slots" in c.extra}


def serve(args: argparse.Namespace) -> int:
    """Resolve settings, build the app and run uvicorn until interrupted."""
    import uvicorn

    from shoal.api.services import Services
    from shoal.app import create_app
    from shoal.backends.local.packaged import ModelFetchError
    from shoal.storage.db import SchemaError

    keys = list(args.api_keys or [])
    keys += [k.strip() for k in os.environ.get("SHOAL_API_KEYS", "").split(",") if k.strip()]
    try:
        settings = build_settings(
            args.config, host=args.host, port=args.port, models=args.models, api_keys=keys or None,
            data_dir=args.data_dir, model_cache=args.model_cache, database_url=args.database_url,
            keepalive_seconds=args.keepalive_seconds, write_timeout_seconds=args.write_timeout_seconds,
            parallel=args.parallel,
            ctx_per_slot=args.ctx_per_slot, threads=args.threads, max_queue=args.max_queue,
            max_body_bytes=args.max_body_bytes, log_level=args.log_level, access_log=args.access_log,
            admin_token=args.admin_token, redis_url=args.redis_url, web_search_url=args.web_search_url,
            first_byte_deadline=args.first_byte_deadline, max_concurrency_per_key=args.max_concurrency_per_key,
            drain_seconds=args.drain_seconds,
        )
    except ConfigError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    # aiosqlite's debug log prints every SQL parameter (key hashes, stored bodies): never let it through.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    if not settings.access_log and settings.log_level != "debug":
        # A line per generation costs more than the rest of a relayed request's logging; /metrics counts them.
        logging.getLogger("shoal.requests").setLevel(logging.WARNING)
    if settings.log_level != "debug":
        # Alembic narrates every schema check; Shoal logs the one line that matters itself.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    from shoal.storage.db import private_dir

    private_dir(settings.data_dir)  # it holds the database and the node id: the owner's only

    def on_ready(services: Services) -> None:
        # Everything built so far (modules, schemas, the catalog) lives as long as the server.
        # Frozen, the collector stops walking it: full collections over the startup heap
        # cost a relayed request about a sixth of its CPU time (docs/benchmarks/gateway.md).
        gc.collect()
        gc.freeze()
        # A relayed request leaves few objects behind, but the ones in flight are counted again
        # and again by the youngest generation's tiny default threshold (700 allocations).
        gc.set_threshold(10_000, 10, 10)
        cards = services.pipeline.cards()
        for line in banner(settings, [c.id for c in cards], local_contexts(cards)):
            log.info("%s", line)

    from shoal.storage.db import default_url

    problem = cli_admin.preflight(settings.database_url or default_url(settings.data_dir), settings.redis_url)
    if problem:
        print(f"shoal: {problem}", file=sys.stderr)
        return 1
    app = create_app(settings, on_ready=on_ready)

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, which on SIGTERM also turns ``/ready`` to 503 for as long as it drains."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            # Only a flag: a signal handler must not take locks (logging) that the interrupted code may hold.
            app.state.draining = True
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=settings.access_log,
                            # Typed int, used as asyncio.timeout(): a fraction of a second works.
                            timeout_graceful_shutdown=settings.drain_seconds)  # type: ignore[arg-type]
    server = DrainingServer(config)
    # uvicorn stops accepting connections on SIGTERM, lets the requests in flight finish for up to
    # timeout_graceful_shutdown seconds, cancels the rest, runs the lifespan shutdown, and then
    # raises the signal again to the handler that was there before it. Python's default for SIGTERM
    # would end a cleanly drained server with 143; this handler makes that a no-op (serve() returns 0),
    # and a SIGTERM that comes before uvicorn installs its own still stops the server.
    signal.signal(signal.SIGTERM, server.handle_exit)
    try:
        server.run()
    except (ModelFetchError, SchemaError) as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return 1
    # uvicorn swallows lifespan failures (bad model, old schema) and just returns.
    return 0 if server.started else 1


def _db_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("db", help="database schema: upgrade or show the revision")
    p.add_argument("action", choices=["upgrade", "status"])
    p.add_argument("--database-url", help="database URL (default: SHOAL_DATABASE_URL or the SQLite file)")
    p.add_argument("--data-dir", type=Path, help="server data directory (for the default SQLite file)")


def db(args: argparse.Namespace) -> int:
    """``shoal db upgrade|status``."""
    import asyncio

    from shoal.config import default_data_dir
    from shoal.storage.db import Database, default_url, private_dir

    data_dir = args.data_dir or default_data_dir()
    url = args.database_url or os.environ.get("SHOAL_DATABASE_URL") or default_url(data_dir)
    if url.startswith("sqlite"):
        private_dir(data_dir)

    async def run() -> int:
        database = Database(url)
        try:
            if args.action == "upgrade":
                before, head = await database.revisions()
                after = await database.upgrade()
                print(f"database at revision {after} (was {before or 'empty'}; newest {head})")
            else:
                current, head = await database.revisions()
                state = "up to date" if current == head else "needs `shoal db upgrade`"
                print(f"database at revision {current or 'empty'}; newest {head}: {state}")
            return 0
        finally:
            await database.aclose()

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``shoal`` command."""
    parser = argparse.ArgumentParser(prog="shoal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _db_parser(sub)
    cli_admin.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "db":
        return db(args)
    if args.command in ("keys", "usage"):
        return cli_admin.run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
