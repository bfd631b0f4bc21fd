"""``latentrec <command>``: each command lives in its own module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from contextlib import nullcontext
from importlib import import_module

from latentrec.cli.memory import release_big_blocks
from latentrec.errors import (
    LatentrecError,
    SeenPairsScored,
    TrainingDiverged,
    UnknownItemsLeftOut,
    interrupt_status,
    one_line,
    sigterm_as_ctrl_c,
)

COMMANDS = ["train", "evaluate", "predict", "tune", "cv", "recommend", "similar", "interpret", "synth", "bench", "ablation",
            "serve"]


class Parser(argparse.ArgumentParser):
    """A usage mistake is one sentence, exit status 2, like every other error (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`).\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latentrec")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="latentrec",
        description="Collaborative filtering on explicit ratings: train, evaluate, predict, recommend.",
        epilog="Example: latentrec train --data ml-100k --out model && latentrec recommend model --user 196",
    )
    parser.add_argument("--version", action="version", version=f"latentrec {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for name in COMMANDS:
        import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def entry() -> int:
    """The ``latentrec`` program. As its own process it picks numba's ``workqueue`` threading layer unless
    ``NUMBA_THREADING_LAYER`` says otherwise: OpenMP's spinning workers slowed the torch and numpy work
    between our kernels (the quickstart's training 1.73 s -> 1.01 s, ML-1M-shaped 4.62 s -> 3.63 s,
    ``benchmarks/sweeps.py``). It also asks torch's OpenMP workers to sleep rather than spin while they wait
    (``OMP_WAIT_POLICY=PASSIVE``, unless set): with one other busy process on 2 cores, spinning workers made
    ``--model nn`` 2.6x and ``--solver autograd`` 2x slower on ML-100K (13.0 s -> 5.1 s, 5.0 s -> 2.6 s); on an
    idle machine nn pays about 12 % (3.8 s -> 4.2 s) and autograd gains (2.7 s -> 2.1 s). The library, imported
    by another program, leaves both alone."""
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        code = main()
        sys.stdout.flush()
        for sig in (signal.SIGINT, signal.SIGTERM):  # the work is done and said: a stop now ends the process with
            signal.signal(sig, lambda *_: os._exit(code))  # its status, not 130 with nothing said (nor a hang)
    except BrokenPipeError:  # the reader left early (`| head`): stop quietly, as Python's documentation advises
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush must not fail too
        return 1
    return code


def _out_of_memory(e: BaseException) -> bool:
    """Python's MemoryError, or PyTorch's failed allocation on any device (a RuntimeError or its subclass)."""
    return (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in str(e) or "out of memory" in str(e).lower())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the parser of the part it came in, so the message points at the right --help
        given = sys.argv[1:] if argv is None else argv
        before = args.command in given and unknown[0] in given[:given.index(args.command)]
        (parser if before else args._parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    release_big_blocks()
    for said_otherwise in (TrainingDiverged, UnknownItemsLeftOut, SeenPairsScored):  # the commands say these their way
        warnings.filterwarnings("ignore", category=said_otherwise)
    try:
        # SIGTERM acts as Ctrl-C (exit 143, checkpoint kept), except in serve, where uvicorn stops gracefully on it
        with nullcontext() if args.command == "serve" else sigterm_as_ctrl_c():
            return int(args.run(args) or 0)
    except LatentrecError as e:
        return _fail(args.command, one_line(e))  # one line, even quoting a library's multi-line text
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            raise
        rank = os.environ.get("RANK")  # memory runs out on one rank (its own GPU): each says so, with its number
        where = f" on rank {rank}" if rank not in (None, "0") else ""
        return _fail(args.command, f"Not enough memory for this run{where}; try smaller settings or less data.",
                     every_rank=True)
    except KeyboardInterrupt as stop:
        if _speaks():
            print(f"latentrec {args.command}: interrupted.", file=sys.stderr)
        return interrupt_status(stop)


def _speaks() -> bool:
    """Whether this process reports our errors: always, except the ranks other than 0 under torchrun (every rank
    checks the same options and data, so all of them meet the same error, and one sentence is enough)."""
    return os.environ.get("RANK", "0") == "0"


def _fail(command: str, message: str, every_rank: bool = False) -> int:
    """Print the error (on rank 0 only under torchrun, unless ``every_rank``); the exit status 2."""
    if every_rank or _speaks():
        print(f"latentrec {command}: error: {message}", file=sys.stderr)
    return 2
