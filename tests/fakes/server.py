"""Run a starlette app on a real loopback port with uvicorn, inside the test's event loop."""

from __future__ import annotations

import asyncio

import uvicorn


class LiveServer:
    def __init__(self, app, **uvicorn_options) -> None:
        self.app = app
        self.options = uvicorn_options
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.options.get("ssl_certfile") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> "LiveServer":
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, lifespan="off", log_level="warning",
                                access_log=False, **self.options)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 5)
