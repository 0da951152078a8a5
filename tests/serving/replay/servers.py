"""A loopback aiohttp server for replay tests: routes in, base URL out, cleaned up on exit."""
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serve(routes: dict, app: web.Application | None = None):
    """Serve ``{path: POST handler}`` on 127.0.0.1 (a free port); yields the base URL."""
    app = app if app is not None else web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()
