"""An app served for real (uvicorn on a free loopback port), for tests that need a live server."""

import contextlib
import socket
import threading
import time


@contextlib.contextmanager
def serving(app):
    """``app`` served by uvicorn on a free loopback port: yields the port."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
