"""HTTP security headers on every response of the viewer (pages, static files, media,
component frames): no framing by other sites, no MIME sniffing, no referrer leaving the
app. Added as ASGI middleware around Streamlit's own app (``apps/viewer/server.py``).

The views are same-origin component frames, so framing is limited to 'self', not denied."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

SECURITY_HEADERS: dict[str, str] = {
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware: sets SECURITY_HEADERS on each HTTP response that lacks them."""

    def __init__(self, app: ASGIApp, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in (headers or SECURITY_HEADERS).items()]

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message.get("type") == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.headers if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)
