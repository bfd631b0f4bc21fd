"""Several server processes on one socket: forked by the process that bound it, each loading the model itself.

The parent forwards SIGHUP to every worker (each reloads its model) and passes a reload asked of one worker over
HTTP on to the others. SIGINT or SIGTERM stops every worker (uvicorn's graceful shutdown), then the parent raises
that signal again, so it exits as a single server process would; a second signal kills the workers (with a drain,
the second ends the drain and a third kills them). A worker that
dies stops the others and the parent fails with one sentence rather than restarting it: a crash here is a bug or
memory running out (N models in memory), which a restart would most likely repeat in a loop, while the service
manager that restarts the whole server sees the failure and can back off.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection, wait

from latentrec.errors import LatentrecError

log = logging.getLogger("latentrec.serve")
STOPS = (signal.SIGINT, signal.SIGTERM)
HANDLED = (signal.SIGHUP, *STOPS)
PR_SET_PDEATHSIG = 1  # prctl's option number (linux/prctl.h)

# One worker's start, run in the forked process: load the model, send ("ready", model info) or ("failed", one
# sentence) on the connection, and return what serves (None after a failure); that sends ("reload", None) when
# /admin/reload asks it to reload. It is called once every worker has loaded, so that none answers before all can.
Work = Callable[[Connection], Callable[[], None] | None]
OnReady = Callable[[list[int], list[dict]], None]  # every worker's pid and model info, once all are loaded


def exit_reason(code: int) -> str:
    """A process's exit code in words."""
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


def stop_with_parent(parent: int) -> None:
    """On Linux, have SIGTERM sent to this worker when its parent dies, even by ``kill -9``: no worker outlives the
    server holding its port. (Elsewhere the call does not exist: a killed parent's workers keep running.)"""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)


class Workers:
    """``n`` forked processes each running ``work``, supervised by this one (see the module docstring)."""

    def __init__(self, n: int, work: Work, stops: int = 1):
        self.n, self.work = n, work
        self.stops = stops  # stop signals passed on as SIGTERM (2 with serve --drain: the second ends the drain)
        self.procs: list[multiprocessing.Process] = []
        self.conns: dict[int, Connection] = {}  # worker -> the end its messages arrive on, while it is open
        self.infos: dict[int, dict] = {}  # worker -> its model's info, once loaded
        self.stop_signal: int | None = None
        self.failure: str | None = None

    def run(self, on_ready: OnReady) -> None:
        """Start the workers, call ``on_ready`` once every one has loaded its model, and return when all have
        stopped: after SIGINT or SIGTERM by raising that signal again, after a worker's failure by raising
        :class:`LatentrecError` with one sentence."""
        previous = self._start()
        try:
            running = dict(enumerate(self.procs))
            while running:
                watched = {p.sentinel: (k, "exited") for k, p in running.items()}
                watched |= {c: (k, "wrote") for k, c in self.conns.items()}
                for ready in wait(list(watched)):
                    k, what = watched[ready]
                    if what == "wrote" and k in self.conns:
                        self._receive(k, on_ready)
                    elif what == "exited":
                        running.pop(k).join()
                        self._exited(k, on_ready)
        finally:
            os.close(self.go_write)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.failure:
            raise LatentrecError(self.failure)
        if self.stop_signal is not None:
            signal.raise_signal(self.stop_signal)

    def _start(self) -> dict[int, object]:
        """Fork the workers with our signals held back, so that none arrives before each side has its handlers;
        the handlers this process had before."""
        fork = multiprocessing.get_context("fork")
        self.parent = os.getpid()
        # a byte for each worker once every worker has loaded and the socket listens; its end (this process gone)
        # means stop. (A multiprocessing Event's set() waits for each woken worker to say so: a worker killed then
        # left this process and the other workers hanging.)
        self.go_read, self.go_write = os.pipe()
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            for k in range(self.n):
                receiver, sender = fork.Pipe(duplex=False)
                # daemon: should this process fail, its exit stops the workers instead of waiting for them
                proc = fork.Process(target=self._child, args=(sender,), name=f"latentrec-worker-{k + 1}", daemon=True)
                proc.start()
                sender.close()  # the worker holds the only sending end: its exit reads as the end of its messages
                self.procs.append(proc)
                self.conns[k] = receiver
            os.close(self.go_read)
            handlers = {signal.SIGHUP: lambda *_: self._signal_all(signal.SIGHUP)}
            handlers |= {sig: self._on_stop for sig in STOPS}
            return {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)

    def _child(self, sender: Connection) -> None:
        """A worker's life: Ctrl-C goes to the parent (it stops the workers with SIGTERM; the terminal sends it to
        the whole group), SIGTERM stops it, and SIGHUP stays blocked, so kept pending, until ``work`` has a model
        to reload and unblocks it; it serves once the parent says every worker is ready."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
        stop_with_parent(self.parent)
        os.close(self.go_write)  # the parent's is then the only writing end
        serve = self.work(sender)
        if serve is not None and os.read(self.go_read, 1):
            serve()

    def _receive(self, k: int, on_ready: OnReady) -> None:
        """Act on worker ``k``'s next message."""
        try:
            kind, payload = self.conns[k].recv()
        except EOFError:
            del self.conns[k]
            return
        if kind == "failed":
            self._fail(payload)
        elif kind == "reload":
            log.info("Worker %d of %d (pid %d) was asked to reload; passing it on to the others.", k + 1, self.n,
                     self.procs[k].pid)
            self._signal_all(signal.SIGHUP, but=k)
        elif kind == "ready":
            self.infos[k] = payload
            if len(self.infos) == self.n and self.stop_signal is None and self.failure is None:
                try:
                    on_ready([p.pid for p in self.procs], [self.infos[i] for i in range(self.n)])
                except LatentrecError as e:
                    self._fail(str(e))
                    return
                try:
                    os.write(self.go_write, b"g" * self.n)
                except BrokenPipeError:  # every worker has died since it said ready: their exits say how
                    pass

    def _exited(self, k: int, on_ready: OnReady) -> None:
        """Worker ``k`` has exited: read what it said last (a failure it reported); an exit no stop asked for is one."""
        while k in self.conns and self.conns[k].poll():
            self._receive(k, on_ready)
        if self.stop_signal is None and self.failure is None:
            proc = self.procs[k]
            when = "died" if k in self.infos else "stopped while loading the model"
            self._fail(f"Worker {k + 1} of {self.n} (pid {proc.pid}) {when} ({exit_reason(proc.exitcode)}); "
                       f"the other workers were stopped.")

    def _fail(self, message: str) -> None:
        """Stop every worker; the run ends by raising ``message`` (the first failure's)."""
        if self.failure is None:
            self.failure = message
            self._signal_all(signal.SIGTERM)

    def _on_stop(self, sig: int, frame: object) -> None:
        """SIGINT or SIGTERM: stop every worker gracefully (passed on ``stops`` times); the next one kills them."""
        self.stops -= 1
        if self.failure is None and self.stops >= 0:
            self.stop_signal = self.stop_signal or sig
            self._signal_all(signal.SIGTERM)
        else:
            self._signal_all(signal.SIGKILL)

    def _signal_all(self, sig: int, but: int | None = None) -> None:
        """Send ``sig`` to every running worker (except number ``but``)."""
        for k, proc in enumerate(self.procs):
            if k != but and proc.exitcode is None:
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:  # exited since: its sentinel tells the loop
                    pass
