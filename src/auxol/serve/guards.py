"""What every request passes before a route sees it: the API key and the body size limit (ASGI middleware).

- :class:`RequireApiKey`: every route except the health checks (:data:`OPEN_PATHS`)
  needs ``Authorization: Bearer <key>``, or HTTP Basic with the key as the password
  (any user name: what Label Studio's ML backend settings send, and what a browser
  asks for when the page answers 401 with ``WWW-Authenticate: Basic``).
- :class:`LimitBody`: a body over the limit is refused with 413, from its
  ``Content-Length`` before it is read, or as soon as the bytes read pass the limit.

A refusal is ``{"error": ...}`` with its status, logged with the route and the reason.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

LOG = logging.getLogger("auxol.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/health", "/api/health")
"""Routes answered without the API key: the health checks of load balancers and Label Studio."""


def log_refusal(method: str, path: str, status: int, reason: str) -> None:
    """Log a 4xx answer: the route and the reason."""
    LOG.warning("%s %s -> %d: %s", method, path, status, reason)


async def send_error(scope: Scope, send: Send, status: int, reason: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer ``{"error": reason}`` with ``status``, and log it."""
    log_refusal(scope.get("method", ""), scope.get("path", ""), status, reason)
    body = json.dumps({"error": reason}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in scope.get("headers", []) if key.lower() == name), None)


def presented_key(authorization: str | None) -> str | None:
    """The key in an ``Authorization`` header: a Bearer token, or the password of HTTP Basic."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


class RequireApiKey:
    """Refuse requests without the API key ``key`` with 401 (see the module docstring)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        key = presented_key(_header(scope, b"authorization"))
        if key is None or not hmac.compare_digest(key.encode(), self.key):
            reason = "no API key: send 'Authorization: Bearer <key>' or HTTP Basic with the key as password"
            if key is not None:
                reason = "wrong API key"
            return await send_error(scope, send, 401, reason, [(b"www-authenticate", b'Basic realm="auxol"')])
        return await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """Raised into the application when the body it reads passes the limit."""


class LimitBody:
    """Refuse request bodies over ``limit`` bytes with 413 (see the module docstring); ``reason`` names the limit."""

    def __init__(self, app: ASGIApp, limit: int, reason: str) -> None:
        self.app = app
        self.limit = limit
        self.reason = reason

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            return await send_error(scope, send, 413, self.reason)
        received, over = 0, False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise BodyTooLarge(self.reason)
            return message

        async def guarded_send(message: Message) -> None:
            if not over:  # what the application answers to a cut body is dropped
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise
        if over:
            await send_error(scope, send, 413, self.reason)
