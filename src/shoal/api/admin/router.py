"""HTTP routes of the admin API (``/admin/...``): keys, usage, replicas. Every route needs the admin token."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from shoal.api.admin.schemas import KeyCreate, ReplicaCreate
from shoal.api.deps import console_admin, services
from shoal.auth.manage import KeySpec
from shoal.errors import InvalidRequestError
from shoal.storage.keys import ApiKey
from shoal.usage.periods import parse_since
from shoal.usage.report import summarize

if TYPE_CHECKING:
    from shoal.api.services import Tenancy
    from shoal.routing.discovery import ReplicaControl


def tenancy(request: Request) -> Tenancy:
    """The app's keys, limits and usage services."""
    return services(request).tenancy


async def admin_only(request: Request) -> None:
    """404 while the admin API is off; 401 without the admin token (a model access key is not one).

    A console session (cookie + CSRF token) stands for the admin token when no ``Authorization`` is sent.
    """
    authorization = request.headers.get("authorization")
    tenancy(request).admin.check(authorization, session=authorization is None and console_admin(request))


router = APIRouter(prefix="/admin", dependencies=[Depends(admin_only)], tags=["admin"])


def _with_secret(key: ApiKey, secret: str) -> dict[str, Any]:
    return {**key.public(), "key": secret}


def _since(value: str | None) -> float | None:
    try:
        return parse_since(value)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="since") from None


@router.post("/keys", status_code=201)
async def create_key(body: KeyCreate, request: Request) -> JSONResponse:
    """Create a key; the response holds the secret, the only time it is shown."""
    key, secret = await tenancy(request).keys.create(KeySpec(**body.model_dump()))
    return JSONResponse(_with_secret(key, secret), status_code=201)


@router.get("/keys")
async def list_keys(request: Request, include_revoked: bool = True) -> dict[str, Any]:
    """Every key (never a secret or a hash)."""
    keys = await tenancy(request).keys.list(include_revoked)
    return {"object": "list", "data": [k.public() for k in keys]}


@router.get("/keys/{key_id}")
async def get_key(key_id: str, request: Request) -> dict[str, Any]:
    """One key."""
    return (await tenancy(request).keys.get(key_id)).public()


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
    """Revoke a key: 401 at once on this replica, within the key cache time on the others."""
    ten = tenancy(request)
    key = await ten.keys.revoke(key_id)
    ten.access.forget(key_id)
    return key.public()


@router.post("/keys/{key_id}/rotate")
async def rotate_key(key_id: str, request: Request) -> dict[str, Any]:
    """Give a key a new secret (shown once); its id, limits, usage and budget carry over."""
    ten = tenancy(request)
    key, secret = await ten.keys.rotate(key_id)
    ten.access.forget(key_id)
    return _with_secret(key, secret)


@router.get("/usage")
async def usage_summary(request: Request, by: Literal["key", "model", "day"] = "key",
                        since: str | None = None) -> dict[str, Any]:
    """Requests, tokens, cost and latency, grouped by key, model or UTC day."""
    ten = tenancy(request)
    start = _since(since)
    names = {k.id: k.name for k in await ten.keys.list()} if by == "key" else None
    rows = await summarize(ten.usage, by, start, names)
    return {"object": "list", "by": by, "since": start, "data": rows}


@router.get("/usage/records")
async def usage_records(request: Request, key_id: str | None = None, since: str | None = None,
                        limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """The newest usage records, one per generation (newest first)."""
    records = await tenancy(request).usage.records(key_id=key_id, since=_since(since), limit=limit)
    return {"object": "list", "data": [asdict(r) for r in records]}


def replica_control(request: Request) -> ReplicaControl:
    """The app's replica sets (every app has them; None only in tests that build services by hand)."""
    control = services(request).replicas
    if control is None:
        raise InvalidRequestError("This server does not manage replicas.", code="replicas_unavailable")
    return control


@router.get("/v1/models/{model:path}/replicas")
async def list_replicas(model: str, request: Request) -> dict[str, Any]:
    """The model's replicas (from ``base_urls``, ``discover`` or this API) with their health and load."""
    return {"object": "list", "model": model, "data": replica_control(request).replicas(model)}


@router.post("/v1/models/{model:path}/replicas", status_code=201)
async def add_replica(model: str, body: ReplicaCreate, request: Request) -> JSONResponse:
    """Add a replica: balanced from now on (as down until its first health probe answers)."""
    return JSONResponse(await replica_control(request).add_replica(model, body.base_url), status_code=201)


@router.delete("/v1/models/{model:path}/replicas")
async def remove_replica(model: str, request: Request, base_url: str = Query(..., min_length=1)) -> dict[str, Any]:
    """Remove a replica: no new requests; its requests in flight finish, then its connections close."""
    return await replica_control(request).remove_replica(model, base_url)
