"""HTTP routes of the web console: the page, its static files, the admin session and live deployment state."""

from __future__ import annotations

import asyncio
import logging
import os
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Scope

from shoal.api.deps import authenticated, context, services
from shoal.console.headers import ConsoleHeaders
from shoal.console.session import ConsoleSessions, Session, browser_scheme, is_loopback_http
from shoal.errors import AuthenticationError, InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from shoal.config import Settings
    from shoal.core.deployment import Deployment

log = logging.getLogger("shoal.console")

STATIC_PATH = "/console/static"
FAILED_SIGN_IN_DELAY = 0.5
"""Seconds a wrong admin token waits before its 401 (slows guessing; the token is long anyway)."""

MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
"""Fixed here, not guessed from the host's MIME table: browsers refuse modules served with another type."""

router = APIRouter(include_in_schema=False)


class ConsoleFiles(StaticFiles):
    """The packaged static files, with fixed media types and revalidated on every load (no stale scripts)."""

    def file_response(self, full_path: Any, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        """The file, with its media type from :data:`MEDIA_TYPES`."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        media = MEDIA_TYPES.get(os.path.splitext(str(full_path))[1])
        if media is not None and response.status_code == 200:
            response.headers["content-type"] = media
        response.headers["cache-control"] = "no-cache"
        return response


class SignIn(BaseModel):
    """``POST /console/session``: the admin token, once; the session cookie stands for it afterwards."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=4096)


def sessions(request: Request) -> ConsoleSessions:
    """The app's console sessions."""
    return request.app.state.console_sessions  # type: ignore[no-any-return]


def static_dir() -> Any:
    """The packaged static files (HTML, CSS, JS)."""
    return resources.files("shoal.console") / "static"


@router.get("/")
async def index() -> HTMLResponse:
    """The console's single page (no secret and no per-user data in it: the page asks the API)."""
    html = (static_dir() / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"cache-control": "no-cache"})


async def _state(request: Request, session: Session | None) -> dict[str, Any]:
    mgr = sessions(request)
    api_auth = await services(request).tenancy.access.auth_required()
    return {
        "admin_api": mgr.enabled,
        "signed_in": session is not None,
        "csrf_token": mgr.csrf_token(session) if session is not None else None,
        "expires_at": session.expires if session is not None else None,
        "api_key_required": api_auth,
    }


def _no_store(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})


@router.get("/console/session")
async def session_state(request: Request) -> JSONResponse:
    """Whether this browser has an admin session, and its CSRF token."""
    return _no_store(await _state(request, sessions(request).current(request)))


@router.post("/console/session")
async def sign_in(body: SignIn, request: Request) -> JSONResponse:
    """Check the admin token once and set the session cookie (HttpOnly, SameSite=Strict, Secure but on loopback)."""
    mgr = sessions(request)
    if not mgr.enabled:
        raise NotFoundError("The admin API is disabled: start the server with --admin-token "
                            "(or SHOAL_ADMIN_TOKEN) to sign in.", code="admin_api_disabled")
    if browser_scheme(request) != "https" and not is_loopback_http(request):
        raise InvalidRequestError("Signing in needs HTTPS (or a loopback address such as 127.0.0.1): "
                                  "the session cookie is Secure.", code="https_required")
    try:
        services(request).tenancy.admin.check(f"Bearer {body.token}")
    except AuthenticationError:
        log.warning("console sign-in with a wrong admin token from %s",
                    request.client.host if request.client else "?")
        await asyncio.sleep(FAILED_SIGN_IN_DELAY)
        raise
    value, session = mgr.create()
    response = _no_store(await _state(request, session))
    secure = not is_loopback_http(request)
    response.set_cookie(mgr.cookie_name(request), value, max_age=mgr.ttl, path="/", secure=secure,
                        httponly=True, samesite="strict")
    log.info("console: admin signed in")
    return response


@router.delete("/console/session")
async def sign_out(request: Request) -> JSONResponse:
    """End the session (CSRF-checked) and clear its cookie."""
    mgr = sessions(request)
    session = mgr.current(request)
    if session is not None and mgr.authorize(request, request.method):
        mgr.end(session)
    response = _no_store(await _state(request, None))
    for name in ("shoal_console", "__Host-shoal_console"):
        response.delete_cookie(name, path="/", secure=name.startswith("__Host-"), httponly=True,
                               samesite="strict")
    return response


def deployment_state(dep: Deployment) -> dict[str, Any]:
    """A deployment's live health and load."""
    extra = dep.card.extra
    adm = dep.admission
    return {
        "model": dep.card.id,
        "name": dep.name,
        "kind": extra.get("upstream") or extra.get("engine") or "local",
        "health": dep.breaker.state,
        "running": adm.running,
        "queued": adm.queued,
        "slots": adm.slots,
        "max_queue": adm.max_queue,
        "ttft_ms": None if dep.ttft_ewma is None else round(dep.ttft_ewma, 1),
        "status": dep.backend.status(),
    }


@router.get("/console/api/deployments", dependencies=[Depends(authenticated)])
async def deployments(request: Request) -> JSONResponse:
    """Every deployment the caller may use, with health and load, and each model's effective prices."""
    svc = services(request)
    ctx = context(request)
    deps = [d for d in svc.pipeline.deployments if ctx.may_use(d.card.id)]
    prices = {d.card.id: svc.tenancy.meter.prices.for_card(d.card).as_dict() for d in deps}
    return _no_store({"object": "list", "data": [deployment_state(d) for d in deps], "prices": prices})


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the console on ``app``: ``/``, ``/console/...`` and strict security headers on those paths."""
    app.state.console_sessions = ConsoleSessions(settings.admin_token)
    app.include_router(router)
    app.mount(STATIC_PATH, ConsoleFiles(directory=str(static_dir())), name="console-static")
    app.add_middleware(ConsoleHeaders)


@router.get("/favicon.ico")
async def favicon() -> Response:
    """The console's icon (browsers ask for it whatever the page says)."""
    return Response((static_dir() / "icon.svg").read_bytes(), media_type="image/svg+xml",
                    headers={"cache-control": "max-age=86400"})
