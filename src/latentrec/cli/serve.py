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
from collections.abc import Callable
from typing import TYPE_CHECKING

from latentrec.atomic import held_signals
from latentrec.cli.common import command, cores
from latentrec.errors import ConfigError, LatentrecError, one_line, sigterm_as_ctrl_c

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from latentrec.use.serve.holder import ModelHolder
    from latentrec.use.serve.workers import Work

SIGNAL_MASKS = hasattr(signal, "SIGHUP") and hasattr(signal, "pthread_sigmask")  # POSIX

EXAMPLE = """latentrec serve model --port 8000          # then open http://127.0.0.1:8000/
  curl 'http://127.0.0.1:8000/api/users/196/recommendations?n=5'
  kill -HUP <pid>                             # read the model dir again after retraining it
  latentrec serve model --workers 4           # 4 processes on the one port, each with its share of the cores
  latentrec serve model --drain 5 --root-path /recs   # behind a load balancer, under https://example.com/recs/"""


def add_parser(sub) -> None:
    p = command(sub, "serve", "Serve a model over HTTP: a JSON API (docs at /docs), a web page at /, "
                "reload on SIGHUP.", EXAMPLE, run)
    p.add_argument("model_dir", help="model directory written by `latentrec train` (opened read-only)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes answering on the one port, each with the model loaded (default 1; N times the "
                        "memory). With N > 1 each uses max(1, cores // N) torch and numba threads; SIGHUP and "
                        "POST /admin/reload reload every one; if one dies, the others are stopped and serve exits "
                        "with status 2")
    p.add_argument("--drain", type=float, default=0.0, metavar="SECONDS",
                   help="on SIGTERM or Ctrl-C, keep answering for SECONDS first, with /readyz at 503 and every answer "
                        "closing its connection, so a load balancer moves clients elsewhere before the port closes "
                        "(default 0: stop at once; a second signal ends the drain)")
    p.add_argument("--root-path", default="", metavar="PREFIX",
                   help="the path a proxy serves this under, stripping it before passing requests on (e.g. /recs): "
                        "the API docs' requests then go through the proxy too (the page needs nothing)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages from ORIGIN (e.g. https://app.example.com; * for any) call the API from a "
                        "browser (CORS); repeat for several")


BACKLOG = 2048  # connections the kernel queues before the server accepts them
MAX_DRAIN_S = 300  # a longer drain is a stop that never comes
SHUTDOWN_GRACE_S = 30  # what a stop leaves requests in flight (a service manager kills after 30-90 s anyway)
KEEP_ALIVE_S = 75  # an idle connection outlives a load balancer's (AWS 60 s): the balancer, not we, closes it


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
    mask = hold_sighup()  # a reload asked for while starting waits for the model (its default would end the process)
    try:
        return start_and_serve(args)
    finally:
        if mask is not None:  # as the caller had it, also after a failed start (serve run in-process, in tests)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def start_and_serve(args) -> int:
    with sigterm_as_ctrl_c():  # until the server takes over its signals (a container's PID 1 ignores one unhandled)
        try:
            with held_signals():  # raised inside pydantic-core's schema building, a stop came out as a SchemaError
                import uvicorn  # noqa: F401

                import latentrec.use.serve.app  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"latentrec serve needs FastAPI, fastapi-offline and uvicorn ({e.name} is missing): "
                              f"pip install 'latentrec[serve]'.") from None
        check(args)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s")
        sock = bind(args.host, args.port)  # a port in use says so before the model is read
    with sock:
        return serve_here(args, sock) if args.workers == 1 else serve_in_workers(args, sock)


def hold_sighup() -> set | None:
    """Block SIGHUP: one that arrives now stays pending until a reload handler is installed and unblocks it
    (:func:`reload_on_sighup` here, ``Workers`` with --workers), then reloads. The signal mask before, or None
    where there is no SIGHUP (Windows)."""
    if not SIGNAL_MASKS:
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})


def check(args) -> None:
    """Refuse bad options with one sentence before binding the port."""
    from latentrec.use.serve.app import check_origins

    check_origins(args.allow_origin, "--allow-origin")
    args.root_path = args.root_path.rstrip("/")  # "/" is no prefix
    if args.root_path and not re.fullmatch(r"(/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)+", args.root_path):  # as URLs write
        raise ConfigError(f"--root-path must be a path such as /recs (ASCII; %-encode other characters), not "
                          f"{args.root_path!r}.")
    if not 0 <= args.drain <= MAX_DRAIN_S:
        raise ConfigError(f"--drain must be between 0 and {MAX_DRAIN_S} seconds, not {args.drain:g}.")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {args.workers}.")
    if args.workers > 1 and not hasattr(os, "fork"):
        raise ConfigError("--workers above 1 needs os.fork (Linux or macOS); run one server per port instead.")


def serve_here(args, sock: socket.socket) -> int:
    """One process: load the model, listen, serve until SIGINT or SIGTERM."""
    from latentrec.use.serve.app import create_app
    from latentrec.use.serve.holder import ModelHolder

    with sigterm_as_ctrl_c():
        holder = ModelHolder(args.model_dir)
        state = holder.load()  # a model that cannot be read stops here with one sentence (exit status 2)
        listen(sock)
        reload_on_sighup(holder)
        announce(args, sock, state.info(), [os.getpid()])
        app = create_app(holder, args.allow_origin)
    uvicorn_run(app, sock, args, holder)
    return 0


def serve_in_workers(args, sock: socket.socket) -> int:
    """``args.workers`` forked processes, each loading the model and serving on ``sock``; listens once all have
    loaded it. Returns (or raises the stopping signal) once all have stopped."""
    from latentrec.use.serve.workers import Workers

    def ready(pids: list[int], infos: list[dict]) -> None:
        listen(sock)
        announce(args, sock, infos[0], pids)
        sock.close()  # the workers hold the socket: once they stop, new connections are refused, not queued

    Workers(args.workers, worker(args, sock), stops=2 if args.drain else 1).run(ready)
    return 0


def worker(args, sock: socket.socket) -> Work:
    """What each forked worker does: use its share of the cores, load the model, say so, take SIGHUP (held back
    until now), and return what serves."""
    from latentrec.parallel import limit_threads
    from latentrec.use.serve.app import create_app
    from latentrec.use.serve.holder import ModelHolder

    def work(parent: Connection) -> Callable[[], None] | None:
        limit_threads(threads(args.workers))
        holder = ModelHolder(args.model_dir)
        try:
            state = holder.load()
        except LatentrecError as e:
            parent.send(("failed", one_line(e)))
            return None
        parent.send(("ready", state.info()))
        reload_on_sighup(holder)  # one sent during the load: reload now

        def pass_reload_on() -> None:
            try:
                parent.send(("reload", None))
            except OSError:  # the parent is gone (this worker is being stopped): nothing to pass on
                pass

        app = create_app(holder, args.allow_origin, on_reload=pass_reload_on)
        return lambda: uvicorn_run(app, sock, args, holder)

    return work


def threads(workers: int) -> int:
    """Each worker's share of the CPU cores this process may run on."""
    return max(1, cores() // workers)


def reload_on_sighup(holder: ModelHolder) -> None:
    """SIGHUP reads the model dir again, on a thread of its own (the old model serves meanwhile); one held back
    while the model loaded is delivered now."""
    if SIGNAL_MASKS:
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=holder.reload, daemon=True).start())
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def announce(args, sock: socket.socket, info: dict, pids: list[int]) -> None:
    """The start-up line on stdout (with --json, one object): the URL, what is served, how to reload and stop."""
    host, port = sock.getsockname()[:2]
    everywhere = ipaddress.ip_address(host).is_unspecified  # 0.0.0.0 or ::, reached here through loopback
    shown = ("127.0.0.1" if ":" not in host else "::1") if everywhere else host
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"
    if args.json:
        print(json.dumps({"url": url, "pid": os.getpid(), "workers": pids, "model": info}), flush=True)
        return
    parts = [f"{info['kind']} rating model"] * bool(info["kind"]) + [f"{info['ranker']} ranker"] * bool(info["ranker"])
    each = threads(len(pids))
    workers = f" in {len(pids)} worker processes ({each} thread{'s' * (each > 1)} each)" * (len(pids) > 1)
    print(f"Serving {args.model_dir} ({' + '.join(parts)}, {info['n_users']:,} users, "
          f"{info['n_items']:,} items) at {url}/{' (and every other address of this machine)' * everywhere}"
          f"{workers}  -- API docs at {url}/docs; reload with "
          f"`kill -HUP {os.getpid()}` or POST /admin/reload; Ctrl+C stops.", flush=True)


def uvicorn_run(app, sock: socket.socket, args, holder: ModelHolder) -> None:
    """Serve ``app`` on the listening ``sock`` until SIGINT or SIGTERM (uvicorn then raises that signal again), after
    ``args.drain`` seconds of draining, letting requests in flight finish for at most ``SHUTDOWN_GRACE_S`` (a client
    that never finishes its request would otherwise hold the server up forever)."""
    import uvicorn

    logs = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    logs["handlers"]["access"]["stream"] = "ext://sys.stderr"  # stdout holds only the start-up line (--json: one object)
    for formatter in logs["formatters"].values():  # stamped like latentrec's own lines, with the answering process
        formatter["fmt"] = "%(asctime)s [%(process)d] " + formatter["fmt"]
    config = uvicorn.Config(app, log_level="info" if args.access_log else "warning", access_log=args.access_log,
                            log_config=logs, timeout_graceful_shutdown=SHUTDOWN_GRACE_S, root_path=args.root_path,
                            timeout_keep_alive=KEEP_ALIVE_S)

    class Draining(uvicorn.Server):
        """uvicorn's server, whose first stop signal drains for ``args.drain`` seconds before uvicorn's shutdown;
        a second one ends the drain."""

        drain: threading.Timer | None = None

        def handle_exit(self, sig: int, frame) -> None:
            if not self.should_exit and self.drain is None:  # the first signal: said, as the start was
                logging.getLogger("latentrec.serve").warning(
                    "Stopping on %s (requests in flight get up to %d s to finish).", signal.Signals(sig).name,
                    SHUTDOWN_GRACE_S)
            if args.drain and self.drain is None:
                holder.draining = True
                logging.getLogger("latentrec.serve").warning(
                    "Draining for %g s before stopping (/readyz answers 503; answers close their connections).",
                    args.drain)
                self.drain = threading.Timer(args.drain, super().handle_exit, (sig, frame))
                self.drain.daemon = True
                self.drain.start()
                return
            if self.drain is not None and self.drain.is_alive():
                self.drain.cancel()
            super().handle_exit(sig, frame)

    Draining(config).run(sockets=[sock])
