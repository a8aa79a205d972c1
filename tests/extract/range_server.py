"""A local HTTP server with byte ranges (206 Partial Content) for COG reads through GDAL
``/vsicurl/``: starlette's ``StaticFiles`` under uvicorn on a free port (``python -m
http.server`` does not serve ranges: GDAL refuses it).

``require_sig=True`` answers 403 to a request without a ``sig`` query parameter, as an Azure
blob without its SAS token does: a read succeeds only through a signer. Every request is
kept (method, path, Range header) to count what a read cost.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class RangeServer:
    def __init__(self, root: Path, *, require_sig: bool = False):
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Mount
        from starlette.staticfiles import StaticFiles

        self.requests: list[tuple[str, str, str]] = []
        static = StaticFiles(directory=str(root))
        server = self

        async def app(scope, receive, send):
            if scope["type"] == "http":
                headers = dict(scope.get("headers") or [])
                query = scope.get("query_string", b"").decode()
                server.requests.append((scope["method"], scope["path"], headers.get(b"range", b"").decode()))
                if require_sig and "sig=" not in query:
                    await PlainTextResponse("AuthenticationFailed: no signature", status_code=403)(scope, receive, send)
                    return
            await outer(scope, receive, send)

        outer = Starlette(routes=[Mount("/", app=static)])
        self.app = app
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.sock = sock
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread: threading.Thread | None = None
        self.server = None

    def __enter__(self):
        import uvicorn

        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
