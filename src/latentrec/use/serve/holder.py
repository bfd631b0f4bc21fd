"""The model a server answers with: loaded from a model dir, reloaded and swapped in atomically.

Requests read ``holder.state`` once and use that snapshot to the end, so a reload never changes
the model under a request. A reload loads and warms the new model beside the old one and swaps
one reference; if the new model fails to load, the old one keeps serving and the failure is
logged. Model calls run one at a time under ``holder.lock``: each already uses every core (torch
and the compiled kernels), so one call at a time is the fastest order within a process;
``latentrec serve --workers N`` runs N processes, each with its own holder and its share of the cores.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentrec.errors import LatentrecError, one_line
from latentrec.use.recommender import Recommender
from latentrec.use.topn import recommend

log = logging.getLogger("latentrec.serve")


@dataclass
class Loaded:
    """One loaded model and what the server derived from it."""

    rec: Recommender
    generation: int
    loaded_at: float
    maps: dict = field(default_factory=dict)  # /api/map answers by n_items, computed on first use

    def info(self) -> dict:
        """What is served: the rating model's and the ranker's kinds (None where the dir has none), sizes."""
        rec = self.rec
        return {"kind": getattr(rec.model, "kind", None), "ranker": getattr(rec.ranker, "kind", None),
                "answers": rec.parts, "n_users": len(self.rec.users) - 1,
                "n_items": len(self.rec.items) - 1, "rating_range": list(self.rec.rating_range),
                "generation": self.generation,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at))}


class ModelHolder:
    """The model dir a server answers from; ``state`` is None until the first load succeeds."""

    def __init__(self, model_dir: str | os.PathLike):
        self.model_dir = Path(model_dir)
        self.state: Loaded | None = None
        self.lock = threading.Lock()  # one model call at a time (see the module docstring)
        self._reloading = threading.Lock()  # one load at a time
        self._asked = threading.Lock()  # guards _queued
        self._queued: Future | None = None  # the reload that starts when the running one ends
        self.last_error: str | None = None
        self.draining = False  # stopping after a drain (serve --drain): /readyz says 503, answers close connections

    def load(self) -> Loaded:
        """Read the model dir (read-only), warm the model up, and swap it in; raises on failure,
        leaving the current model (if any) serving."""
        with self._reloading:
            return self._load()

    def _load(self) -> Loaded:
        rec = Recommender.load(self.model_dir)
        self._warm_up(rec)
        generation = self.state.generation + 1 if self.state else 1
        self.state = Loaded(rec, generation, time.time())  # one reference assignment: atomic
        self.last_error = None
        return self.state

    def reload(self) -> tuple[bool, str]:
        """:meth:`load`, with a failure logged and reported instead of raised: ``(swapped, message)``.

        Reloads asked while another waits to start share it and its answer (each still reads the model dir
        after it was asked), so a burst of N SIGHUPs or requests loads twice at most, not N times."""
        with self._asked:
            queued, leads = self._queued, self._queued is None
            if leads:
                queued = self._queued = Future()
        if not leads:
            return queued.result()
        try:
            with self._reloading:
                with self._asked:
                    self._queued = None  # from now on a new request waits for a load of its own
                answer = self._reload()
        except BaseException as e:  # interrupted, waiting or loading: the callers waiting on it hear of it too
            with self._asked:
                if self._queued is queued:  # never started: the next caller queues a load of its own
                    self._queued = None
            queued.set_exception(e)
            raise
        queued.set_result(answer)
        return answer

    def _reload(self) -> tuple[bool, str]:
        try:
            state = self._load()
        except Exception as e:  # whatever breaks the new model, the old one must keep serving
            expected = isinstance(e, LatentrecError)  # a bad model dir says so in one sentence; anything else is a bug
            message = (one_line(e) if expected
                       else f"Loading {self.model_dir} failed unexpectedly; the server log has the details.")
            self.last_error = message
            serving = f"generation {self.state.generation} keeps serving" if self.state else "no model is serving"
            log.error("Reload of %s failed: %s %s.", self.model_dir, message, serving.capitalize(),
                      exc_info=not expected)
            return False, message
        message = f"loaded {self.model_dir} as generation {state.generation}"
        log.info("Loaded %s as generation %d.", self.model_dir, state.generation)
        return True, message

    def _warm_up(self, rec: Recommender) -> None:
        """One recommendation and one prediction, so the first request does not pay for compiled code
        loading; a model that cannot answer one of them is still served (the request will say so)."""
        user = rec.users.classes[1] if len(rec.users) > 1 else "#na#"
        item = rec.items.classes[1] if len(rec.items) > 1 else "#na#"
        with self.lock:
            for call in (lambda: recommend(rec, user, 1), lambda: rec.predict(np.array([user]), np.array([item]))):
                try:
                    call()
                except LatentrecError:
                    pass
