"""Training checkpoints: everything needed to continue a run, rewritten atomically at an epoch end once
``every`` seconds have passed since the last one (0: every epoch). A checkpoint of a big model is
megabytes serialized and fsynced, which at 60 epochs of ML-100K cost 1.6 s of a 4 s run.

A checkpoint is one ``checkpoint.safetensors`` file in the checkpoint folder. Its tensors are
the current weights, the best epoch's weights, the optimizer's moments and the torch random
generators' states; the epoch, history, config, numpy generator states and a fingerprint of
the training data are JSON in the safetensors header. Nothing is pickled, so reading a
checkpoint cannot run code. The file is written to a temporary name, flushed to disk and
renamed over the previous one, so a crash at any moment leaves the last good checkpoint. The tensors
are written from the trainer's own memory (no copy of the model, nor of the file in memory): with
1M ratings, 100k x 50k, ``latentrec train`` of the Bayesian model (50 kept samples, 300 MB) peaked
at 3.4 GB with 17 s of training before, 1.65 GB and 12 s since.

Under ``torchrun`` every rank restores the same file and rank 0 writes it, with every rank's
generator states (rank ``r``'s under ``rankR.``) and the data-parallel wrapper's inner runners'
generators and optimizer moments; resuming needs the same number of processes. Rank 0's clock says when
a save is due (every rank takes part in it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from latentrec.atomic import atomic_path, held_signals
from latentrec.data.batches import Batches
from latentrec.errors import ConfigError, DataError, ModelFileError
from latentrec.solvers.base import Runner
from latentrec.solvers.distributed import agreed, gather_states, is_main, world
from latentrec.solvers.optim import Optimizer
from latentrec.training.callback import Callback
from latentrec.use.model_dir import read_weights, write_tensors

FILE = "checkpoint.safetensors"
TMP_PREFIX = f".{FILE}."  # latentrec.atomic's temp files beside it
FORMAT, FORMAT_VERSION = "latentrec-checkpoint", 1


def default_folder(out: str | os.PathLike) -> Path:
    """Where ``latentrec train --out OUT`` keeps its checkpoint: ``OUT.checkpoint`` beside the model."""
    out = Path(os.path.normpath(out))
    if out.name in ("", ".."):  # `--out .`: named after the folder itself, not "..checkpoint"
        out = Path(os.path.normpath(out.absolute()))
    return out.with_name(f"{out.name}.checkpoint")


def fingerprint(trainer) -> str:
    """sha256 of the encoded training and validation rows: resuming on other data is refused.

    Computed once per trainer (the rows do not change during training; hashing 100M ratings takes seconds).
    """
    if trainer.data_hash is None:
        h = hashlib.sha256()
        for data in (trainer.train, trainer.valid):
            if data is not None:
                for a in (data.users, data.items, data.ratings):
                    h.update(memoryview(np.ascontiguousarray(a)))
        h.update(repr(trainer.model_sizes()).encode())
        trainer.data_hash = h.hexdigest()
    return trainer.data_hash


def capture(trainer) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and JSON-able metadata describing ``trainer`` at the end of its last epoch. CPU tensors are the
    trainer's own, not copies: write them before the next epoch changes them."""
    tensors = {f"model.{k}": _host(v) for k, v in trainer.model.state_dict().items()}
    if trainer.best_state is not None:
        tensors.update({f"best.{k}": _host(v) for k, v in trainer.best_state.items()})
    runner_meta: dict = {"numpy": {}, "optim": {}, "limit": trainer.runner.limit, "ranks": {}}
    ranks = gather_states(*random_state(trainer.runner))  # every rank takes part; rank 0 writes them all
    for rank, (rng, numpy_states) in enumerate(ranks):
        tensors.update({f"{_rank_prefix(rank)}{k}": v for k, v in rng.items()})
        if rank:
            runner_meta["ranks"][str(rank)] = numpy_states
        else:
            runner_meta["numpy"] = numpy_states
    for name, value in _parts(trainer.runner):
        if isinstance(value, Optimizer):  # moments are the same on every rank (gradients are averaged)
            scalars = {}
            for i, p in enumerate(value.params):
                for key, v in value.state.get(id(p), {}).items():
                    if isinstance(v, torch.Tensor):
                        tensors[f"opt.{name}.{i}.{key}"] = _host(v)
                    else:
                        scalars.setdefault(str(i), {})[key] = v
            runner_meta["optim"][name] = scalars
    runner_meta["solver"] = {}
    for key, value in trainer.runner.solver_state().items():  # closed-form solvers keep their own iterates
        if isinstance(value, torch.Tensor):
            tensors[f"solver.{key}"] = _host(value)
        else:
            runner_meta["solver"][key] = value
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "processes": len(ranks),
        "epoch": trainer.history[-1]["epoch"] if trainer.history else 0,
        "config": trainer.cfg.to_dict(),
        "data": fingerprint(trainer),
        "history": trainer.history,
        "best_epoch": trainer.best_epoch,
        "best_rmse": trainer.best_rmse,
        "train_seconds": trainer.train_seconds,
        "runner": runner_meta,
    }
    return tensors, meta


def _host(t: torch.Tensor) -> torch.Tensor:
    """``t`` in host memory, contiguous: itself when it already is (no copy of a big model)."""
    return t.detach().cpu().contiguous()


def restore(trainer, tensors: dict[str, torch.Tensor], meta: dict, where: Path) -> None:
    """Put ``trainer`` (whose runner exists) back in the state ``capture`` recorded."""
    config, saved = trainer.cfg.to_dict(), meta["config"]
    differ = [k for k in config if _jsonable(config[k]) != _jsonable(saved.get(k))]
    # another model or solver says all; else the options this run reads (a Bayesian run's lr is a placeholder)
    differ = [k for k in ("model", "solver") if k in differ] or [k for k in differ if k in trainer.cfg.saved()] or differ
    if differ:
        shown = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)} (now {config[k]})" for k in differ)
        raise ConfigError(
            f"The checkpoint in {where} was made with {shown}; resume with the run's original options, "
            f"or delete {where} to start over."
        )
    if meta["data"] != fingerprint(trainer):
        raise DataError(
            f"The checkpoint in {where} was made from different training data; resume with the same data "
            f"and split options, or delete {where} to start over."
        )
    saved_processes, processes = meta.get("processes", 1), world()[1]
    if saved_processes != processes:
        raise ConfigError(
            f"The checkpoint in {where} was made by {saved_processes} process(es), and this run has {processes}; "
            f"resume with as many, or delete {where} to start over."
        )
    device = next(trainer.model.parameters()).device
    trainer.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
    trainer.best_state = best or None
    runner = trainer.runner
    runner.limit = meta["runner"]["limit"]
    rank = world()[0]
    key = _rank_prefix(rank)
    numpy_states = meta["runner"]["ranks"][str(rank)] if rank else meta["runner"]["numpy"]
    torch.set_rng_state(tensors[f"{key}rng.torch"])
    for name, value in _parts(runner):
        if isinstance(value, np.random.Generator):
            value.bit_generator.state = numpy_states[name]
        elif isinstance(value, torch.Generator):
            value.set_state(tensors[f"{key}rng.{name}"])
        elif isinstance(value, Batches):
            value.generator.set_state(tensors[f"{key}rng.{name}"])
        elif isinstance(value, Optimizer):
            scalars = meta["runner"]["optim"].get(name, {})
            for i, p in enumerate(value.params):
                state = dict(scalars.get(str(i), {}))
                prefix = f"opt.{name}.{i}."
                state.update({k[len(prefix):]: v.to(p.device) for k, v in tensors.items() if k.startswith(prefix)})
                if state:
                    value.state[id(p)] = state
    state = dict(meta["runner"].get("solver", {}))
    state.update({k[7:]: v.to(device) for k, v in tensors.items() if k.startswith("solver.")})
    runner.load_solver_state(state)
    trainer.history = list(meta["history"])
    trainer.best_epoch, trainer.best_rmse = meta["best_epoch"], meta["best_rmse"]
    trainer.train_seconds = meta["train_seconds"]
    trainer.start_epoch = meta["epoch"]


def _parts(runner: Runner) -> list[tuple[str, object]]:
    """``(name, value)`` of every attribute of the runner, or under torchrun of its data-parallel wrapper's
    inner runners (named ``inner0.NAME``, ...), where generators and optimizers live."""
    parts = {f"inner{j}.": r for j, r in enumerate(runner.inners)} if runner.inners else {"": runner}
    return [(prefix + name, value) for prefix, part in parts.items() for name, value in vars(part).items()]


def random_state(runner: Runner) -> tuple[dict[str, torch.Tensor], dict]:
    """This process's random generators: torch's global one and every one the runner holds (numpy's as JSON)."""
    tensors, numpy_states = {"rng.torch": torch.get_rng_state()}, {}
    for name, value in _parts(runner):
        if isinstance(value, np.random.Generator):
            numpy_states[name] = value.bit_generator.state
        elif isinstance(value, torch.Generator):
            tensors[f"rng.{name}"] = value.get_state()
        elif isinstance(value, Batches):
            tensors[f"rng.{name}"] = value.generator.get_state()
    return tensors, numpy_states


def _rank_prefix(rank: int) -> str:
    """Rank 0's generators are stored under their plain names (as a one-process run's), rank r's under ``rankR.``."""
    return f"rank{rank}." if rank else ""


def _jsonable(value):
    return json.loads(json.dumps(value))


def save(folder: str | os.PathLike, trainer) -> Path:
    """Write ``trainer``'s checkpoint into ``folder`` atomically; the previous one stays until then."""
    folder = Path(folder)
    tensors, meta = capture(trainer)
    if not is_main():  # under torchrun every rank takes part in capture; rank 0 writes
        return folder / FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with held_signals(), atomic_path(folder / FILE) as tmp:  # written from the tensors, not a copy
            write_tensors(tmp, tensors, {"latentrec": json.dumps(meta)})
    except OSError as e:
        raise ModelFileError(f"Cannot write the checkpoint to {folder}: {e.strerror or e}.") from None
    return folder / FILE


def load(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of the checkpoint in ``folder``, every failure as one sentence."""
    folder = Path(folder)
    path = folder / FILE
    if not path.is_file():
        raise ConfigError(f"There is no checkpoint to resume from in {folder}; run without --resume to start.")
    try:
        tensors, header = read_weights(path)
        meta = json.loads(header["latentrec"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise ModelFileError(f"The checkpoint {path} is corrupt ({e}); delete {folder} to start over.") from None
    if meta.get("format") != FORMAT or not isinstance(meta.get("format_version"), int):
        raise ModelFileError(f"{path} is not a latentrec checkpoint; delete {folder} to start over.")
    if meta["format_version"] > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer latentrec (checkpoint format {meta['format_version']}); "
                             f"upgrade latentrec to resume it.")
    return tensors, meta


def completed_epoch(folder: str | os.PathLike) -> int | None:
    """The last completed epoch saved in ``folder``, or None when it holds no readable checkpoint."""
    try:
        return int(load(folder)[1]["epoch"])
    except (ConfigError, ModelFileError):
        return None


class Checkpointer(Callback):
    """Callback: saves a checkpoint at an epoch end once ``every`` seconds have passed since the last save
    (or the start); with ``resume`` first restores the saved one, then calls ``resumed`` with its epoch."""

    def __init__(self, folder: str | os.PathLike, resume: bool = False, every: float = 0.0,
                 resumed: Callable[[int], None] | None = None):
        self.folder = Path(folder)
        self.resume = resume
        self.every = every
        self.resumed = resumed
        self.saved_epoch: int | None = None
        self.saved_at = time.monotonic()

    def on_fit_start(self, trainer) -> None:
        self.saved_at = time.monotonic()
        if self.resume:
            tensors, meta = load(self.folder)
            if is_main():
                self.remove_partial()  # a save cut short by a crash
            restore(trainer, tensors, meta, self.folder)
            self.saved_epoch = meta["epoch"]
            if self.resumed is not None:
                self.resumed(self.saved_epoch)

    def on_epoch_end(self, trainer, record: dict) -> None:
        due = time.monotonic() - self.saved_at >= self.every
        if self.every > 0 and not agreed(due):  # under torchrun rank 0's clock decides: saving is a collective
            return
        save(self.folder, trainer)
        self.saved_epoch = record["epoch"]
        self.saved_at = time.monotonic()

    def remove_partial(self) -> None:
        for stale in self.folder.glob(f"{TMP_PREFIX}*"):
            stale.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the checkpoint once the finished model is safely saved."""
        (self.folder / FILE).unlink(missing_ok=True)
        self.remove_partial()
        try:
            self.folder.rmdir()
        except OSError:
            pass  # the folder holds files that are not ours: leave them
