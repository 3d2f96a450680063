"""The checks every request passes before the explorer reads it: Host, Origin, the token, and
the body's size; and the headers every answer carries.

A plain ASGI middleware (no per-request task or stream, unlike an `@app.middleware`): it
answers a refused request itself with a one-line JSON `detail`, and reads an accepted POST's
body (bounded by its checked Content-Length) before the app sees it, so a client that leaves
or is closed mid-body ends the request quietly instead of as an error in the log.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from vaekit.serve.schema import MAX_BODY_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN_PATHS = ("/", "/favicon.ico")  # the page and its files need no token: they hold no data
OPEN_PREFIX = "/static/"
# The page loads only its own files; images arrive as data URLs. No framing, no referrer (the
# token is in the page's URL).
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        b"form-action 'none'; frame-ancestors 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
]


class Guard:
    """Refuse what the explorer must not answer, before it reads the request.

    hosts: Host names accepted (None: any). On loopback, only loopback names: a web page on
    another site cannot reach the server through DNS rebinding.
    token: the secret every request outside OPEN_PATHS carries, as `Authorization: Bearer
    <token>` or `?token=<token>` (None: no token).
    A request with an Origin header from anywhere but this server (a page on another site, a
    sandboxed frame's "null") is refused whatever the token: a cross-site POST does no work.
    """

    def __init__(self, app: Any, *, hosts: set[str] | None, token: str | None) -> None:
        self.app = app
        self.hosts = hosts
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = with_headers(send)
        refusal = self.refusal(scope)
        if refusal is not None:
            await respond(send, *refusal)
            return
        if scope["method"] == "POST":
            body = await read_body(receive, MAX_BODY_BYTES)
            if body is None:
                return  # the client left (or its deadline closed it): nobody to answer
            if len(body) > MAX_BODY_BYTES:  # a chunked body, past its checked length
                await respond(send, 413, f"request body is over the limit, {MAX_BODY_BYTES}", [])
                return
            receive = replay(body, receive)
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """(status, detail, headers) for a request to refuse, else None."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.hosts is not None and host_name(host) not in self.hosts:
            return 400, "unexpected Host header; open the address vaekit serve printed", []
        origin = headers.get("origin")
        if origin is not None and not same_origin(origin, host):
            shown = origin[:80]
            return 403, f"requests from a page at {shown} are refused; use this server's page", []
        if self.token is not None and needs_token(scope["path"]):
            given = given_token(scope, headers)
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                what = "a wrong token" if given else "no token"
                return (
                    401,
                    f"this server needs its token and got {what}: open the URL with ?token= "
                    "that vaekit serve printed",
                    [(b"www-authenticate", b"Bearer")],
                )
        if scope["method"] == "POST":
            # refuse an oversized body before reading it; h11 holds a body to its Content-Length
            length = headers.get("content-length")
            if length is None:
                return 411, "send a Content-Length header", []
            if not length.isdigit():
                return 400, "Content-Length is not a number", []
            if int(length) > MAX_BODY_BYTES:
                return 413, f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}", []
        return None


def needs_token(path: str) -> bool:
    return not (path in OPEN_PATHS or path.startswith(OPEN_PREFIX))


def given_token(scope: Scope, headers: dict[str, str]) -> str:
    """The token a request carries: `Authorization: Bearer <t>`, else `?token=<t>`, else ""."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query.get("token", [""])[0]


def host_name(header: str) -> str:
    """The name in a Host header, port dropped: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:80" ->
    "::1" (starlette's TrustedHostMiddleware cuts an IPv6 address at its first colon)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def same_origin(origin: str, host: str) -> bool:
    """Whether an Origin header names the server the request came to (its Host header).
    http(s) only; a scheme's default port may be written or left out on either side."""
    scheme, sep, netloc = origin.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https") or not netloc or "/" in netloc:
        return False
    default = ":80" if scheme == "http" else ":443"

    def bare(n: str) -> str:
        return n[: -len(default)] if n.endswith(default) else n

    return bare(netloc) == bare(host.strip().lower())


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body (or its first `limit` + 1 bytes and more: too long), or None when
    the client disconnects first."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body", False) or size > limit:
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body already read, then the client's later messages."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def with_headers(send: Send) -> Send:
    """A send that adds SECURITY_HEADERS to the response."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return sending


async def respond(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    start_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})
