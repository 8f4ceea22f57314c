"""Console sessions: a signed, short-lived cookie standing for the admin token, plus a CSRF token.

The browser never keeps the admin token: ``POST /console/session`` checks it
once and sets a cookie ``v1.<expires>.<nonce>.<signature>``, signed with HMAC-SHA256
under a key derived from the admin token (so every replica with the same token
accepts it, and changing the token ends every session). The cookie is HttpOnly,
``SameSite=Strict`` and ``Secure`` except on plain http to a loopback address
(browsers drop Secure cookies there, and loopback traffic never leaves the host).

Every state-changing request made with the cookie must also carry
``X-CSRF-Token``: an HMAC of the session's nonce that the page got from
``/console/session`` (a synchronizer token, derived rather than stored). It must
also come from this origin when the browser says where it comes from (``Origin``).
With no admin token configured no session can be made or accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from shoal.errors import PermissionDeniedError

COOKIE = "shoal_console"
SECURE_COOKIE = "__Host-shoal_console"
"""The cookie's name when it is Secure: the ``__Host-`` prefix pins it to this host and path ``/``."""
CSRF_HEADER = "x-csrf-token"
TTL_SECONDS = 2 * 3600
"""How long a session lasts; then the console asks for the admin token again."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
ENDED_ENTRIES = 10_000


@dataclass(frozen=True)
class Session:
    """A verified session: its nonce (what the CSRF token is derived from) and its expiry (epoch seconds)."""

    nonce: str
    expires: int


def is_loopback_http(conn: HTTPConnection) -> bool:
    """Whether the request is plain http to a loopback host (where a Secure cookie would not come back)."""
    return browser_scheme(conn) == "http" and (conn.url.hostname or "") in LOOPBACK


def browser_scheme(conn: HTTPConnection) -> str:
    """``https`` or ``http`` as the browser sees it (a proxy's ``X-Forwarded-Proto: https`` counts)."""
    forwarded = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return "https" if forwarded == "https" else conn.url.scheme


class ConsoleSessions:
    """Makes and checks console sessions for one app (built from the admin token; no module state)."""

    def __init__(self, admin_token: str | None, ttl: int = TTL_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = (hmac.new(admin_token.encode(), b"shoal console session v1", hashlib.sha256).digest()
                     if admin_token else None)
        self.ttl = ttl
        self.clock = clock
        self._ended: OrderedDict[str, int] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether sessions exist at all (an admin token is configured)."""
        return self._key is not None

    def _sign(self, message: str) -> str:
        assert self._key is not None
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def create(self) -> tuple[str, Session]:
        """A new session: the cookie value and what it stands for."""
        if self._key is None:
            raise RuntimeError("console sessions need an admin token")
        session = Session(nonce=secrets.token_urlsafe(18), expires=int(self.clock()) + self.ttl)
        body = f"v1.{session.expires}.{session.nonce}"
        return f"{body}.{self._sign(body)}", session

    def verify(self, value: str | None) -> Session | None:
        """The session a cookie value stands for, or None (missing, forged, expired or ended)."""
        if self._key is None or not value:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit():
            return None
        body = ".".join(parts[:3])
        if not hmac.compare_digest(self._sign(body), parts[3]):
            return None
        expires = int(parts[1])
        if expires <= self.clock() or parts[2] in self._ended:
            return None
        return Session(nonce=parts[2], expires=expires)

    def csrf_token(self, session: Session) -> str:
        """The CSRF token of ``session`` (what the page echoes in ``X-CSRF-Token``)."""
        return self._sign(f"csrf.{session.nonce}")

    def end(self, session: Session) -> None:
        """Refuse this session from now on, on this replica (logout); it expires everywhere anyway."""
        self._ended[session.nonce] = session.expires
        now = self.clock()
        for nonce, expires in list(self._ended.items()):
            if expires <= now or len(self._ended) > ENDED_ENTRIES:
                del self._ended[nonce]

    # -- requests -------------------------------------------------------------
    def cookie_name(self, conn: HTTPConnection) -> str:
        """The cookie's name for this request (``__Host-`` prefixed when it is Secure)."""
        return COOKIE if is_loopback_http(conn) else SECURE_COOKIE

    def current(self, conn: HTTPConnection) -> Session | None:
        """The request's valid session, if any (either cookie name)."""
        for name in (SECURE_COOKIE, COOKIE):
            session = self.verify(conn.cookies.get(name))
            if session is not None:
                return session
        return None

    def authorize(self, conn: HTTPConnection, method: str) -> bool:
        """Whether the request is made by a valid console session; 403 if it is but fails the CSRF checks.

        Safe methods need only the cookie. Others need ``X-CSRF-Token`` matching
        the session, and an ``Origin`` (when the browser sends one) of this host.
        """
        session = self.current(conn)
        if session is None:
            return False
        if method.upper() in SAFE_METHODS:
            return True
        if not same_origin(conn):
            raise PermissionDeniedError("Cross-origin request refused.", code="csrf_failed")
        token = conn.headers.get(CSRF_HEADER) or ""
        if not hmac.compare_digest(token.encode(), self.csrf_token(session).encode()):
            raise PermissionDeniedError("Missing or wrong CSRF token (X-CSRF-Token): reload the console.",
                                        code="csrf_failed")
        return True


def same_origin(conn: HTTPConnection) -> bool:
    """False when the browser says the request comes from another origin.

    ``Sec-Fetch-Site`` (sent by every current browser) decides when present: it is the browser's own
    verdict and survives proxies that rewrite ``Host``. Otherwise ``Origin``, when sent, must name this
    host (``Host`` or a proxy's ``X-Forwarded-Host``); only host and port are compared, since behind a
    TLS-terminating proxy the scheme seen here is not the browser's.
    """
    site = conn.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    netloc = urlsplit(origin).netloc.lower()
    forwarded = conn.headers.get("x-forwarded-host", "").split(",")[0].strip()
    hosts = {conn.headers.get("host", "").lower(), forwarded.lower()}
    return netloc in hosts - {""}
