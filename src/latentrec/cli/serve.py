"""``latentrec serve``: a trained model behind an HTTP JSON API and a web page, reloaded on SIGHUP."""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import threading

from latentrec.cli.common import command
from latentrec.errors import ConfigError

EXAMPLE = """latentrec serve model --port 8000          # then open http://127.0.0.1:8000/
  curl 'http://127.0.0.1:8000/api/users/196/recommendations?n=5'
  kill -HUP <pid>                             # read the model dir again after retraining it"""


def add_parser(sub) -> None:
    p = command(sub, "serve", "Serve a model over HTTP: a JSON API (docs at /docs), a web page at /, "
                "reload on SIGHUP.", EXAMPLE, run)
    p.add_argument("model_dir", help="model directory written by `latentrec train` (opened read-only)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages from ORIGIN (e.g. https://app.example.com; * for any) call the API from a "
                        "browser (CORS); repeat for several")


BACKLOG = 2048  # connections the kernel queues before the server accepts them


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` but not listening yet, or one clear sentence saying why not. Until it
    listens, a connection is refused at once (a health probe sees the server down) instead of waiting in the
    backlog while the model loads."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {port}.")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             proto=socket.IPPROTO_TCP)[0]
        sock = socket.socket(family, kind, proto)  # proto TCP: asyncio then sets TCP_NODELAY on each connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise ConfigError(f"Cannot listen on {host}:{port}: {e.strerror or e}.") from None
    return sock


def listen(sock: socket.socket) -> None:
    """Let connections in: from now on they wait in the backlog until the server accepts them."""
    try:
        sock.listen(BACKLOG)
    except OSError as e:  # another server bound the same port meanwhile and listened first
        host, port = sock.getsockname()[:2]
        raise ConfigError(f"Cannot listen on {host}:{port}: {e.strerror or e}.") from None


def run(args) -> int:
    try:
        import uvicorn

        from latentrec.use.serve.app import create_app
        from latentrec.use.serve.holder import ModelHolder
    except ImportError as e:
        raise ConfigError(f"latentrec serve needs FastAPI and uvicorn ({e.name} is missing): "
                          f"pip install 'latentrec[serve]'.") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for origin in args.allow_origin:  # a browser's Origin header has no path, not even a trailing slash
        if origin != "*" and not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^/\s]+", origin):
            raise ConfigError(f"--allow-origin {origin!r} must be * or scheme://host[:port] with no path "
                              f"(e.g. https://app.example.com).")
    sock = bind(args.host, args.port)  # a port in use says so before the model is read
    holder = ModelHolder(args.model_dir)
    try:
        state = holder.load()  # a model that cannot be read stops here with one sentence (exit status 2)
        listen(sock)
    except BaseException:
        sock.close()
        raise
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=holder.reload, daemon=True).start())
    host, port = sock.getsockname()[:2]
    everywhere = ipaddress.ip_address(host).is_unspecified  # 0.0.0.0 or ::, reached here through loopback
    shown = ("127.0.0.1" if ":" not in host else "::1") if everywhere else host
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
    if args.json:
        print(json.dumps({"url": url, "pid": os.getpid(), "model": state.info()}), flush=True)
    else:
        info = state.info()
        parts = [f"{info['kind']} rating model"] * bool(info["kind"]) + [f"{info['ranker']} ranker"] * bool(info["ranker"])
        print(f"Serving {args.model_dir} ({' + '.join(parts)}, {info['n_users']:,} users, "
              f"{info['n_items']:,} items) at {url}/{' (and every other address of this machine)' * everywhere}"
              f"  -- API docs at {url}/docs; reload with "
              f"`kill -HUP {os.getpid()}` or POST /admin/reload; Ctrl+C stops.", flush=True)
    logs = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    logs["handlers"]["access"]["stream"] = "ext://sys.stderr"  # stdout holds only the line above (--json: one object)
    config = uvicorn.Config(create_app(holder, args.allow_origin), log_level="info" if args.access_log else "warning",
                            access_log=args.access_log, log_config=logs)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
