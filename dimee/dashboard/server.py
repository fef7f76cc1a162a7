"""The dashboard's web server: Starlette routes served by uvicorn, snapshots pushed as server-sent events
(sse-starlette), every script served from here (plotly.js from its Python wheel): the page needs no CDN."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import Protocol

import anyio
import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dimee.common.errors import DimeeError
from dimee.dashboard.live import HISTORY_POINTS, ChartHistory

STATIC = Path(__file__).parent / "static"


class SnapshotSource(Protocol):
    """What the server shows: a `Follower`, or anything else that folds a stream into snapshots."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def snapshot(self) -> dict: ...


def plotly_js() -> Response:
    """plotly.min.js as the plotly wheel ships it (read from the file, not rebuilt per request)."""
    bundled = resources.files("plotly") / "package_data" / "plotly.min.js"
    if bundled.is_file():
        return FileResponse(str(bundled), media_type="application/javascript")
    from plotly.offline import get_plotlyjs  # a wheel laid out otherwise: the same script, from memory

    return Response(get_plotlyjs(), media_type="application/javascript")


def create_app(source: SnapshotSource, every_s: float = 1.0, history_points: int = HISTORY_POINTS) -> Starlette:
    """`/` the page, `/events` a snapshot every `every_s` seconds, `/snapshot` the latest one as JSON,
    `/history` the charts' last `history_points` points (one every `every_s` seconds, kept whether a page is
    open or not: a page that opens starts with them), `/healthz`, and `/static/…` the page's scripts. The
    source runs for the app's lifetime."""
    history = ChartHistory(history_points)

    async def snapshot() -> dict:
        return await anyio.to_thread.run_sync(source.snapshot)  # takes the follower's lock: off the loop

    async def events(request: Request) -> EventSourceResponse:
        async def stream() -> AsyncIterator[dict]:
            while not await request.is_disconnected():
                yield {"data": json.dumps(await snapshot())}
                await asyncio.sleep(every_s)

        return EventSourceResponse(stream(), ping=15)

    async def latest(_: Request) -> JSONResponse:
        return JSONResponse(await snapshot())

    async def recent(_: Request) -> JSONResponse:  # on the loop, where `record` adds: no lock needed
        return JSONResponse(history.served())

    async def record() -> None:
        while True:
            history.add(await snapshot())
            await asyncio.sleep(every_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        source.start()
        recording = asyncio.create_task(record())
        try:
            yield
        finally:
            recording.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recording
            await anyio.to_thread.run_sync(source.stop)

    routes = [
        Route("/", lambda _: FileResponse(STATIC / "index.html")),
        Route("/events", events),
        Route("/snapshot", latest),
        Route("/history", recent),
        Route("/healthz", lambda _: PlainTextResponse("ok\n")),
        Route("/static/plotly.min.js", lambda _: plotly_js()),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened before anything slow: a busy port is one line, not a uvicorn traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise DimeeError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another dashboard there? "
                         "pick another --port)") from exc


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn raises the caught SIGTERM again once shut down, so the process dies of it (-15); a stop
            # asked for is a clean exit here, status 0, as for every role under `dimee up`
            getattr(self, "_captured_signals", []).clear()


def serve(app: Starlette, sock: socket.socket, log_level: str = "warning") -> None:
    """Until SIGINT/SIGTERM: then open event streams close within 2 s and the process exits with 0."""
    config = uvicorn.Config(app, log_level=log_level.lower(), access_log=False, timeout_graceful_shutdown=2)
    _Server(config).run(sockets=[sock])
