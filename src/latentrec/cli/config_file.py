"""Options from a TOML file (``--config FILE``), with command-line flags taking precedence.

A command calls :func:`defer_defaults` on its parser after adding its options: every default
becomes :data:`UNSET`, so after parsing, a value that is not ``UNSET`` was typed by the user.
:func:`apply_config` then fills the rest from the file, checked against the option's type and
choices, and finally from the real defaults. File keys are option names with ``_`` or ``-``
(``n_factors`` or ``n-factors``). A model directory (its ``model.json``) is accepted as a
config too, so any saved model can be retrained with exactly its resolved configuration.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import tomllib
from dataclasses import fields
from pathlib import Path

from latentrec.cli.common import seed
from latentrec.config import ALWAYS, TrainConfig, option
from latentrec.errors import ConfigError


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()
NOT_OPTIONS = {"help", "config"}


def defer_defaults(parser: argparse.ArgumentParser) -> None:
    """Make every option's default :data:`UNSET`, remembering the real defaults for :func:`apply_config`."""
    options = {}
    for action in parser._actions:
        if action.dest in NOT_OPTIONS or action.dest is argparse.SUPPRESS:
            continue
        options[action.dest] = (action, action.default)
        action.default = UNSET
    parser.set_defaults(_options=options)


def apply_config(args: argparse.Namespace, extra: set[str] = frozenset()) -> dict:
    """Fill options not given on the command line from ``args.config`` (if any), then from defaults.

    Returns the file's keys in ``extra`` (e.g. a search space) untouched; any other key that is not
    an option of the command is an error. See :func:`one_validation` for ``--valid`` beside ``--valid-pct``.
    """
    given = {dest for dest in vars(args) if getattr(args, dest) is not UNSET}
    options: dict = args._options
    path = getattr(args, "config", None)
    values = _retarget(read_config(path), args) if path else {}
    unknown = sorted(k for k in values if k not in options and k not in extra)
    if unknown:
        known = sorted(set(options) | set(extra))
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""  # (an f-string times False still reads close[0])
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)} ({hint}known: {', '.join(known)}).")
    for dest, (action, default) in options.items():
        if getattr(args, dest, UNSET) is UNSET:
            value = check_value(action, values[dest], path) if dest in values else default
            setattr(args, dest, beside(path, dest, value) if dest in values and dest in INPUT_FILES else value)
    args._from_config = set(values) - given  # the options the file set: resolved() names it in their errors
    one_validation(args, given)
    return {k: v for k, v in values.items() if k in extra}


def resolved(args: argparse.Namespace, config: TrainConfig) -> TrainConfig:
    """``config.resolved()``; an error about an option the ``--config`` file set names the file (``epochs = 0``
    said only ``epochs (--epochs) must be ...``)."""
    try:
        return config.resolved()
    except ConfigError as e:
        if any(option(key) in str(e) for key in getattr(args, "_from_config", ())):
            raise ConfigError(f"{args.config}: {e}") from None
        raise


def one_validation(args: argparse.Namespace, given: set[str]) -> None:
    """A validation file (``--valid``, or ``valid`` in the config file) with ``--valid-pct`` or ``--valid-by`` on the
    command line is refused: those choose rows of --data to validate on. Otherwise the file wins, and what is kept
    (``model.json``'s config, tune's ``best.toml``) says nothing is held out."""
    if not getattr(args, "valid", None):
        return
    asked = []
    if "valid_pct" in given and args.valid_pct:
        asked.append(f"--valid-pct {args.valid_pct:g}")
    if "valid_by" in given and args.valid_by != "random":
        asked.append(f"--valid-by {args.valid_by}")
    if asked:
        source = "" if "valid" in given else f" (valid in {args.config})"
        raise ConfigError(f"{' and '.join(asked)} choose{'s' * (len(asked) == 1)} rows of --data to validate on, and "
                          f"{args.valid}{source} is a validation file of its own: give one.")
    args.valid_pct = 0.0
    if hasattr(args, "valid_by"):
        args.valid_by = "random"


INPUT_FILES = {"data", "valid", "test", "data_dir"}  # options naming files or folders to read


def beside(config: str | os.PathLike, dest: str, value: str):
    """A relative path in a config file, looked up beside that file first, then in the current folder (a dataset
    name such as ml-100k stays a name, even beside a folder of that name)."""
    if not isinstance(value, str) or Path(value).is_absolute():
        return value
    there = Path(config).parent / value
    return str(there) if (there.is_dir() if dest == "data_dir" else there.is_file()) else value


def _retarget(values: dict, args: argparse.Namespace) -> dict:
    """A config file's (or model dir's, or tune's best.toml) settings fit its own model and solver. When the
    command line names another model or solver, only the data options and the settings every solver shares are
    kept (another model also takes its own default solver): the rest would be refused as unused. A burn-in that
    is the default sixth of the epochs is left to follow ``--epochs``."""
    values = dict(values)
    if isinstance(values.get("epochs"), int) and values.get("burn_in") == values["epochs"] // 6:
        del values["burn_in"]
    changed = [k for k in ("model", "solver") if getattr(args, k, UNSET) not in (UNSET, values.get(k))]
    if not changed:
        return values
    recipe = {f.name for f in fields(TrainConfig)} - set(ALWAYS) | ({"solver"} if "model" in changed else set())
    return {k: v for k, v in values.items() if k not in recipe}


def read_config(path: str | os.PathLike) -> dict:
    """A TOML file, or a model directory's resolved config, as ``{option: value}`` with ``_`` keys."""
    p = Path(path)
    if (meta := _model_json(p)) is not None:
        return _model_config(meta)
    try:
        raw = tomllib.loads(p.read_bytes().decode("utf-8-sig"))  # with or without a BOM, as ratings files are read
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror or e}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}.") from None
    return {k.replace("-", "_"): v for k, v in raw.items()}


def _model_json(p: Path) -> Path | None:
    """The model.json a ``--config`` naming a model dir (or its model.json) reads; None for a TOML file."""
    return p / "model.json" if p.is_dir() else p if p.suffix == ".json" else None


def _model_config(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        values = {k: v for k, v in meta["config"].items() if v is not None}
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist (give a TOML file or a model directory).") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"{path} holds no training config (give a TOML file or a model directory).") from None
    if isinstance(meta.get("data"), str) and meta["data"] != "DataFrame":
        values["data"] = meta["data"]
    return values


def model_dir_columns(config: str | os.PathLike | None) -> dict[str, str]:
    """The columns a model dir given as ``--config`` was trained from (``{}`` for a TOML file or none): where the
    data has no column of a role by name, train reads that one (``cli.common.with_model_columns``)."""
    meta = _model_json(Path(config)) if config else None
    if meta is None:
        return {}
    try:
        columns = json.loads(meta.read_text(encoding="utf-8")).get("columns")
    except (OSError, ValueError, AttributeError):
        return {}
    return columns if isinstance(columns, dict) else {}


def check_value(action: argparse.Action, value, path) -> object:
    """``value`` from the file, checked as argparse would check the typed option."""
    name = action.dest
    where = f"{path}: {name}"
    if action.nargs == 0:  # a flag such as --json
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}.")
        return value
    if action.nargs == "+":
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where} must be a list of one or more values, not {value!r}.")
        return [_scalar(action, v, where) for v in value]
    if isinstance(action.nargs, int) or action.nargs == "*":
        n = action.nargs if isinstance(action.nargs, int) else None
        if not isinstance(value, list) or (n is not None and len(value) != n):
            raise ConfigError(f"{where} must be a list of {n if n is not None else 'any number of'} values, "
                              f"not {value!r}.")
        return [_scalar(action, v, where) for v in value]
    return _scalar(action, value, where)


def _scalar(action: argparse.Action, value, where: str):
    kind = int if action.type is seed else action.type  # its range is checked with the other training options
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        ok = False
    elif kind is int:
        ok = isinstance(value, int)
    elif kind is float:
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        want = {int: "a whole number", float: "a number"}.get(kind, "a string")
        raise ConfigError(f"{where} must be {want}, not {value!r}.")
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, action.choices))}, not {value!r}.")
    return value


def dumps_toml(values: dict) -> str:
    """TOML text for a dict of scalars, lists and one level of tables; ``None`` values are left out."""
    lines, tables = [], []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None)
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                         "inf" if value > 0 else "-inf")
    if isinstance(value, str):  # TOML basic string: escape quotes, backslashes and control characters
        return '"' + "".join(c if c >= " " and c not in '"\\\x7f' else f"\\u{ord(c):04x}" for c in value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def checked_train_options(values: dict, path) -> dict:
    """Training options from a config file, checked as ``latentrec train`` checks its flags."""
    from latentrec.cli import train

    sub = argparse.ArgumentParser().add_subparsers()
    train.add_parser(sub)
    options = sub.choices["train"].get_default("_options")
    return {k: check_value(options[k][0], v, path) if k in options else v for k, v in values.items()}
