"""What each field of ``model.json`` must hold, checked once on load: a hand-edited or damaged file is
refused in one sentence naming the field, instead of failing later, deep inside a prediction.

The fields are those :meth:`Recommender.save <latentrec.use.recommender.Recommender.save>` writes;
``format``, ``format_version`` and ``write_id`` are checked where the model dir is read.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

from latentrec.data.row_errors import FLOAT32_MAX
from latentrec.errors import ModelFileError, clip


class Rule(NamedTuple):
    test: Callable[[object], bool]
    what: str  # what the value must be, for the error sentence


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _strings(v) -> bool:
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


def _scale(v) -> bool:
    """A rating scale: one value is a scale too (like-only data, for a ranking model). Predictions are float32, so
    its ends and its width must be float32 numbers."""
    return (isinstance(v, list) and len(v) == 2 and all(map(_number, v)) and v[0] <= v[1]
            and v[1] - v[0] <= FLOAT32_MAX and max(map(abs, v)) <= FLOAT32_MAX)


def _range(v) -> bool:
    return _scale(v) and v[0] < v[1]


def _epoch(v) -> bool:
    return isinstance(v, dict) and _whole(v.get("epoch")) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v.values())


TEXT = Rule(lambda v: isinstance(v, str), "a string")
NUMBER = Rule(_number, "a finite number")
WHOLE = Rule(_whole, "a whole number of at least 0")
FLAG = Rule(lambda v: isinstance(v, bool), "true or false")
IDS = Rule(_strings, "a list of ids (strings)")
OBJECT = Rule(lambda v: isinstance(v, dict), "an object")

# a model part's description ("architecture", "ranker"): its config() keys
PART = {
    "kind": TEXT, "n_users": WHOLE, "n_items": WHOLE, "n_factors": WHOLE, "n_samples": WHOLE, "user_size": WHOLE,
    "item_size": WHOLE, "n_rated": WHOLE, "bias": FLAG, "bn": FLAG, "implicit": FLAG,
    "layers": Rule(lambda v: isinstance(v, list) and all(map(_whole, v)), "a list of whole numbers"),
    "y_range": Rule(lambda v: v is None or _range(v), "null or two float32 numbers, the lower first"),
    **{k: NUMBER for k in ("dropout", "lam", "reg", "alpha", "rating_mean", "rating_std", "rating_weight")},
}
FIELDS = {
    "latentrec_version": TEXT,
    "parts": Rule(lambda v: _strings(v) and set(v) <= {"ratings", "ranking"}, 'a list of "ratings" and "ranking"'),
    "architecture": OBJECT, "ranker": OBJECT,
    "users": IDS, "items": IDS,
    "titles": Rule(lambda v: isinstance(v, dict) and all(isinstance(t, str) for t in v.values()),
                   "an object of item id: title (a string)"),
    "rating_range": Rule(_scale, "two float32 numbers, the lower first"),
    "baseline_mean": NUMBER,
    "config": Rule(lambda v: isinstance(v, dict) and (v.get("wd") is None or _number(v["wd"])),
                   "an object of training options (wd a number or null)"),
    "history": Rule(lambda v: isinstance(v, list) and all(map(_epoch, v)),
                    "a list of epoch records (objects of numbers, with a whole-number epoch)"),
    "metrics": Rule(lambda v: isinstance(v, dict) and all(map(_number, v.values())), "an object of finite numbers"),
    "best_epoch": Rule(lambda v: v is None or _whole(v), "null or a whole number"),
    "train_seconds": NUMBER, "ranker_seconds": NUMBER, "n_train": WHOLE, "n_valid": WHOLE,
    "ranker_check": Rule(lambda v: isinstance(v, dict) and isinstance(v.get("ranker"), str) and all(
        _number(x) if k not in ("reason", "kept") else isinstance(x, str) for k, x in v.items() if k != "ranker"),
        "an object of the replaced ranker's kind, the order kept, numbers and a reason"),
    "data": TEXT, "diverged": TEXT, "valid_digest": TEXT,
    "columns": Rule(lambda v: isinstance(v, dict) and set(v) <= {"user", "item", "rating"}
                    and all(isinstance(x, str) and x for x in v.values()) and len(set(v.values())) == len(v),
                    "an object of role: column name (distinct names)"),
    "refit": Rule(lambda v: isinstance(v, dict) and all(map(_number, v.values())), "an object of finite numbers"),
}
INFO = ("metrics", "best_epoch", "train_seconds", "ranker_seconds", "n_train", "n_valid", "ranker_check", "data",
        "diverged", "refit", "columns", "valid_digest")  # what a model says about its training: Recommender.info
REQUIRED = ("users", "items", "rating_range", "baseline_mean")  # and a rating model's architecture, or a ranker
PART_REQUIRED = ("kind", "n_items")


def check_meta(meta: dict, where: str) -> None:
    """Raise :class:`ModelFileError` naming ``where`` (the model.json) and the first field that is missing,
    of the wrong type or out of range; ids must be unique."""
    _check(meta, FIELDS, (*REQUIRED, *(() if "ranker" in meta else ("architecture",))), where, "")
    for part in ("architecture", "ranker"):
        if part in meta:
            _check(meta[part], PART, PART_REQUIRED, where, f"{part}.")
    described = ["ratings"] * ("architecture" in meta) + ["ranking"] * ("ranker" in meta)
    if meta.get("parts", described) != described:
        raise ModelFileError(f"{where}: field 'parts' lists {_short(meta['parts'])}, but the file describes "
                             f"{_short(described)}; it was edited or damaged.")
    for name in ("users", "items"):
        if len(set(meta[name])) < len(meta[name]):
            twice = next(i for i, count in Counter(meta[name]).items() if count > 1)
            raise ModelFileError(f"{where}: field '{name}' lists the id {_short(twice)} more than once; "
                                 f"ids must be unique.")


def _check(values: dict, rules: dict[str, Rule], required: tuple[str, ...], where: str, prefix: str) -> None:
    for name in required:
        if name not in values:
            raise ModelFileError(f"{where} has no '{prefix}{name}' field; it is not a complete latentrec model "
                                 f"description.")
    for name, rule in rules.items():
        if name in values and not rule.test(values[name]):
            raise ModelFileError(f"{where}: field '{prefix}{name}' must be {rule.what}, not {_short(values[name])}.")


def _short(value) -> str:
    """``value`` as it reads in the file (JSON), cut to a few dozen characters."""
    return clip(json.dumps(value, ensure_ascii=False))
