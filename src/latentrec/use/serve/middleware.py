"""The server's ASGI middleware: a bug's 500 in JSON, HEAD answered as GET, timing and request-id headers,
``Connection: close`` while draining, and the request body's size and idle limits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from latentrec.use.serve.holder import ModelHolder

BODY_IDLE_S = 10.0  # a request body with no bytes for this long gets 408 (a stalled client holds nothing for long)


def with_headers(send, extra: Callable[[], list[tuple[bytes, bytes]]]):
    """``send`` adding the headers ``extra()`` gives as the answer starts."""

    async def sending(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra()]}
        await send(message)

    return sending


class BugsAsJson:
    """A bug's 500 in JSON like every other error (starlette's is plain text, and sent outside the other middleware:
    without CORS or timing headers); the traceback goes to the log."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            logging.getLogger("latentrec.serve").exception("%s %s failed", scope["method"], scope["path"])
            if started:  # part of an answer went out: nothing to put right, the connection is closed
                raise
            await JSONResponse({"detail": "The server failed to answer (an internal error; its log has the "
                                          "traceback)."}, status_code=500)(scope, receive, send)


class HeadAsGet:
    """HEAD is answered as GET without the body, on every route (FastAPI answers only the methods a route declares:
    a monitor's ``HEAD /`` was a 405)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class Traced:
    """Every answer says how long the app took (``Server-Timing: app;dur=`` in milliseconds, which a browser's
    network panel shows) and carries back the caller's ``X-Request-ID``, to match it in the caller's logs."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.perf_counter()
        asked = [(k, v) for k, v in scope["headers"] if k == b"x-request-id"][:1]

        def traced() -> list[tuple[bytes, bytes]]:
            return [(b"server-timing", f"app;dur={(time.perf_counter() - began) * 1000:.1f}".encode()), *asked]

        await self.app(scope, receive, with_headers(send, traced))


class CloseWhileDraining:
    """While ``holder.draining``, every answer says ``Connection: close``: a keep-alive client opens its next
    connection elsewhere (the load balancer has seen /readyz go 503) instead of sending on one about to close."""

    def __init__(self, app, holder: ModelHolder):
        self.app, self.holder = app, holder

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        closing = lambda: [(b"connection", b"close")] if self.holder.draining else []  # noqa: E731
        await self.app(scope, receive, with_headers(send, closing))


class BodyLimit:
    """A request body over ``limit`` bytes, as declared or as it arrives, is a 413 with a JSON ``detail`` like every
    other error here (starlette's own limit answers in plain text), and one that stalls for :data:`BODY_IDLE_S` a
    408 (half-sent bodies held a connection each until shutdown, which then logged each one's traceback). Raised
    while the endpoint reads the body, the ``HTTPException`` reaches FastAPI's handler."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        seen, complete = 0, False

        async def limited():
            nonlocal seen, complete
            if complete:  # after the body: waiting for a disconnect, as long as it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_IDLE_S)
            except TimeoutError:
                raise HTTPException(408, f"The request body stalled for {BODY_IDLE_S:g} s.") from None
            complete = not message.get("more_body", False)
            seen += len(message.get("body", b""))
            if seen > self.limit or (declared.isdigit() and int(declared) > self.limit):
                raise HTTPException(413, f"The request body is over {self.limit:,} bytes.")
            return message

        await self.app(scope, limited, send)
