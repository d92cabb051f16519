"""The floor a Python gateway is judged against (design.md §11): a bare aiohttp/uvloop relay that
forwards the request body to the upstream and relays the answer, with no parsing at all.

`python bench/relay.py --port P --embed-upstream URL --stream-upstream URL` (origins, no path)
"""

import argparse

import aiohttp
import uvloop
from aiohttp import web


def make_app(embed: str, stream: str) -> web.Application:
    app = web.Application()

    async def start(app: web.Application) -> None:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        origin = stream if request.path.endswith("/chat/completions") else embed
        body = await request.read()
        async with app["session"].post(origin + request.path, data=body,
                                       headers={"Content-Type": "application/json"}) as up:
            if up.headers.get("Content-Type", "").startswith("text/event-stream"):
                resp = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
            return web.Response(body=await up.read(), status=up.status, content_type="application/json")

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/{tail:.*}", relay)
    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--embed-upstream", required=True)
    p.add_argument("--stream-upstream", required=True)
    a = p.parse_args()
    uvloop.install()
    web.run_app(make_app(a.embed_upstream, a.stream_upstream), host="127.0.0.1", port=a.port, access_log=None,
                print=None, backlog=4096)
