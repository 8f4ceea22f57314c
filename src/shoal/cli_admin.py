"""``shoal keys ...`` and ``shoal usage``: manage model access keys and read usage, straight from the database.

They need no running server: they use the same database as ``shoal serve``
(``--database-url``, ``SHOAL_DATABASE_URL`` or the SQLite file in the data dir).
A key created here works at once on every server; a revoked one stops within
the servers' key cache time (2 s by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

from shoal.auth.manage import PERIODS, KeyManager, KeySpec, split_models
from shoal.errors import ShoalError
from shoal.storage.db import Database, SchemaError
from shoal.storage.keys import ApiKey, KeyStore
from shoal.storage.usage import UsageStore
from shoal.usage.periods import parse_since
from shoal.usage.report import FORMATS, GROUPS, render, summarize

Action = Callable[[argparse.Namespace, Database], Awaitable[int]]


def _database_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="database URL (default: SHOAL_DATABASE_URL or the SQLite file)")
    p.add_argument("--data-dir", type=Path, help="server data directory (for the default SQLite file)")


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``keys`` and ``usage`` to the ``shoal`` command."""
    keys = sub.add_parser("keys", help="model access keys: create, list, revoke, rotate")
    actions = keys.add_subparsers(dest="keys_action", required=True)

    create = actions.add_parser("create", help="create a key and print it (the only time it is shown)")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--models", help="comma-separated model ids the key may use (default: all)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--budget", type=float, metavar="USD", help="spend allowed per period")
    create.add_argument("--period", choices=PERIODS, help="budget period, UTC (default month)")
    create.add_argument("--format", choices=["text", "json"], default="text")
    _database_options(create)

    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--active", action="store_true", help="hide revoked keys")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    _database_options(listing)

    for name, text in (("revoke", "revoke a key (servers refuse it within seconds)"),
                       ("rotate", "give a key a new secret; the old one stops working")):
        p = actions.add_parser(name, help=text)
        p.add_argument("id", help="the key id (key_...)")
        p.add_argument("--format", choices=["text", "json"], default="text")
        _database_options(p)

    usage = sub.add_parser("usage", help="usage and cost, summarized by key, model or day")
    usage.add_argument("--by", choices=GROUPS, default="key")
    usage.add_argument("--since", help="7d, 24h, 30m, today, or a date / datetime (UTC); default: all time")
    usage.add_argument("--format", choices=FORMATS, default="table")
    _database_options(usage)


def database_url(args: argparse.Namespace) -> str:
    """The database ``shoal serve`` would use with the same options."""
    from shoal.config import default_data_dir
    from shoal.storage.db import default_url, private_dir

    data_dir = args.data_dir or default_data_dir()
    url = args.database_url or os.environ.get("SHOAL_DATABASE_URL") or default_url(data_dir)
    if url.startswith("sqlite"):
        private_dir(data_dir)
    return str(url)


def _limits(key: ApiKey) -> str:
    budget = f"${key.budget_usd:g}/{key.budget_period}" if key.budget_usd is not None else "-"
    models = ",".join(key.models) if key.models is not None else "all"
    return f"models: {models}; rpm: {key.rpm or '-'}; tpm: {key.tpm or '-'}; budget: {budget}"


def _show_secret(key: ApiKey, secret: str, fmt: str, verb: str) -> None:
    if fmt == "json":
        print(json.dumps({**key.public(), "key": secret}, indent=2))
        return
    print(f"{verb} key {key.id} \"{key.name}\" ({_limits(key)})", file=sys.stderr)
    print(secret)
    print("This is the only time the key is shown: Shoal keeps only its hash.", file=sys.stderr)


def _date(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


def key_table(keys: list[ApiKey]) -> str:
    """Keys as an aligned text table."""
    head = ["id", "name", "prefix", "status", "models", "rpm", "tpm", "budget", "created (UTC)"]
    rows = [[k.id, k.name, k.prefix + "…", "active" if k.active else "revoked",
             ",".join(k.models) if k.models is not None else "all", str(k.rpm or "-"), str(k.tpm or "-"),
             f"${k.budget_usd:g}/{k.budget_period}" if k.budget_usd is not None else "-", _date(k.created_at)]
            for k in keys]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [head, *rows]]
    return "\n".join(lines if rows else [*lines, "(no keys yet: shoal keys create --name NAME)"])


async def _create(args: argparse.Namespace, db: Database) -> int:
    spec = KeySpec(name=args.name, models=split_models(args.models), rpm=args.rpm, tpm=args.tpm,
                   budget_usd=args.budget, budget_period=args.period)
    key, secret = await KeyManager(KeyStore(db)).create(spec)
    _show_secret(key, secret, args.format, "Created")
    return 0


async def _list(args: argparse.Namespace, db: Database) -> int:
    keys = await KeyManager(KeyStore(db)).list(include_revoked=not args.active)
    print(json.dumps({"object": "list", "data": [k.public() for k in keys]}, indent=2) if args.format == "json"
          else key_table(keys))
    return 0


async def _revoke(args: argparse.Namespace, db: Database) -> int:
    key = await KeyManager(KeyStore(db)).revoke(args.id)
    if args.format == "json":
        print(json.dumps(key.public(), indent=2))
    else:
        print(f"Revoked key {key.id} \"{key.name}\"; servers refuse it within a few seconds.")
    return 0


async def _rotate(args: argparse.Namespace, db: Database) -> int:
    key, secret = await KeyManager(KeyStore(db)).rotate(args.id)
    _show_secret(key, secret, args.format, "Rotated")
    return 0


async def _usage(args: argparse.Namespace, db: Database) -> int:
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return 2
    names = {k.id: k.name for k in await KeyStore(db).list()} if args.by == "key" else None
    rows = await summarize(UsageStore(db), args.by, since, names)
    print(render(rows, args.by, args.format))
    return 0


ACTIONS: dict[str, Action] = {"create": _create, "list": _list, "revoke": _revoke, "rotate": _rotate}


def run(args: argparse.Namespace) -> int:
    """Run ``shoal keys ...`` or ``shoal usage``."""
    action = _usage if args.command == "usage" else ACTIONS[args.keys_action]

    async def go() -> int:
        db = Database(database_url(args))
        try:
            await db.prepare()
            return await action(args, db)
        finally:
            await db.aclose()

    try:
        return asyncio.run(go())
    except SchemaError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return 1
    except ShoalError as exc:
        print(f"shoal: {exc.message}", file=sys.stderr)
        return 1


def preflight(database_url_: str, redis_url: str | None) -> str | None:
    """Why ``shoal serve`` cannot start (an outdated schema, Redis unreachable), said plainly; None if it can."""
    from shoal.wiring.tenancy import LimitsStoreError, connect_redis

    async def check() -> str | None:
        db = Database(database_url_)
        try:
            current, head = await db.revisions()
            if current is not None and current != head:
                return (f"The database schema is at revision {current}, but this Shoal needs {head}. "
                        "Run `shoal db upgrade` (with the same --database-url) and start again.")
        finally:
            await db.aclose()
        if redis_url:
            try:
                client = await connect_redis(redis_url)
            except LimitsStoreError as exc:
                return str(exc)
            await client.aclose()
        return None

    return asyncio.run(check())
