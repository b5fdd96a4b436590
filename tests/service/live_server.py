"""A real uvicorn server on a loopback port for tests that drive the API with real clients
(the openai package, LangChain / LlamaIndex stores, the CLI over --url)."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import uvicorn


@contextmanager
def serve(app):
    """Serve `app` on a socket bound here (no race for the port); yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextmanager
def serve_new(data_dir, **settings):
    """A new app over ``data_dir`` (``settings``: Settings fields, e.g. api_keys), served."""
    from service.app import create_app
    from service.settings import Settings
    with serve(create_app(Settings(data_dir=data_dir, _env_file=None, **settings))) as url:
        yield url
