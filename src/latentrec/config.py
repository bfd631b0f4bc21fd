"""Training configuration: one dataclass, the tuned default recipe, validation of every value, learning-rate
schedules."""

from __future__ import annotations

import math
import numbers
from dataclasses import MISSING, asdict, dataclass, fields, replace

from latentrec.errors import ConfigError


def option(name: str) -> str:
    """How an error names a training option, for Python callers, --config files and the command line alike:
    ``n_factors (--n-factors)``."""
    return f"{name} (--{name.replace('_', '-')})"


VALID_BY = ("random", "time", "user")  # which rows valid_pct holds out (data/split.py)


def check_valid_pct(valid_pct: float) -> None:
    if not 0 <= valid_pct < 1:
        raise ConfigError(f"{option('valid_pct')} must be in [0, 1), not {valid_pct}.")


MODELS = ("dot", "nn", "ease", "ials")
DEFAULT_SOLVER = {"dot": "bayes", "nn": "autograd", "ease": "closed", "ials": "cg"}
RANKING_MODELS = ("ease", "ials")  # learn which items users pick; they order lists but predict no ratings
SOLVERS = ("sgd", "autograd", "als", "bayes", "closed", "cg")  # als/bayes: closed-form solvers for the dot model
RANKERS = ("auto", "ease", "ials", "popular", "none")  # the ranking model a rating model's dir is paired with
EASE_AUTO_ITEMS = 10_000  # ranker "auto": EASE up to this many items (seconds to fit), iALS beyond
IALS_AUTO_RATINGS = 20_000_000  # ... and iALS up to this many training ratings (on 2 cores, 80M took 249 s; a
# 2-sweep fit at 80M peaks at 8.4 GB, 3.3 GB of it the data)
# Choices and defaults the CLI shows in --help live here, so that building its parser imports no heavy module.
DUPLICATE_POLICIES = ("error", "mean", "last")  # what to do with a (user, item) pair rated twice
ML100K_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")  # ML-100K's own <name>.base / <name>.test files
CHECKPOINT_EVERY = 10.0  # seconds between training checkpoints (latentrec train --checkpoint-every)
RANK_EVAL_USERS = 10_000  # train's closing ranking metrics score a seeded sample of this many test users at most
MIN_RATINGS = 20  # an unknown user's ranking only considers items rated at least this often
SEED_MAX = 2**32 - 1  # numpy's and optuna's seeds are 32-bit
SIZE_MAX = {"n_factors": 100_000, "epochs": 1_000_000, "bs": 2**31 - 1}  # beyond these, sizes overflow, not train
OPTIMIZERS = ("sgd", "adam")  # --opt for --solver autograd (solvers/optim.py)


@dataclass
class TrainConfig:
    """Every knob of a training run. ``None`` means "the recipe's default for this model/solver".

    The defaults were tuned on a validation split carved from ML-100K's training rows
    (``benchmarks/sgd_recipe_grid.py`` for sgd, ``benchmarks/accuracy.py --tune`` for the others), never on
    a test file.
    """

    model: str = "dot"
    solver: str | None = None  # dot: bayes (default), sgd, als or autograd; nn: autograd
    n_factors: int | None = None
    epochs: int | None = None
    lr: float | None = None
    wd: float | None = None
    wd_mode: str | None = None  # l2: grad += wd * param (the seed); decoupled: AdamW-style
    opt: str = "adam"
    momentum: float = 0.9
    bs: int | None = None
    schedule: str | None = None
    loss: str = "mse"
    y_range: tuple[float, float] | None = None  # None: a little wider than the data's range
    valid_pct: float = 0.2
    valid_by: str = "random"  # VALID_BY: random rows, the latest by timestamp, or each user's latest
    seed: int | None = 42  # None: a random run (fit draws a seed and keeps it in the model's config)
    device: str = "auto"
    layers: tuple[int, ...] | None = None  # nn: hidden layer sizes of the MLP
    dropout: float | None = None  # nn: dropout after each hidden layer
    bn: bool | None = None  # nn: batch norm after each hidden layer
    implicit: bool | None = None  # nn: embeddings also sum what was rated (SVD++-style)
    burn_in: int | None = None  # bayes: Gibbs sweeps (of --epochs) discarded before averaging; default epochs // 6
    ranker: str | None = None  # rating models: the ranking model paired with them (RANKERS; default auto)
    alpha: float | None = None  # ials: confidence of a rated cell is 1 + alpha * its rating weight
    rating_weight: float | None = None  # ease/ials: how much more a high rating counts as "picked" (0: all equal)

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` filled from the recipe for this model and solver, checked."""
        if self.model not in MODELS:
            raise ConfigError(f"{option('model')} must be one of {', '.join(MODELS)}, not {self.model!r}.")
        if self.solver is not None and self.solver not in SOLVERS:
            raise ConfigError(f"{option('solver')} must be one of {', '.join(SOLVERS)}, not {self.solver!r}.")
        solver = self.solver or DEFAULT_SOLVER[self.model]
        recipe = RECIPES.get((self.model, solver))
        if recipe is None:
            raise ConfigError(f"model {self.model!r} cannot be trained with solver {solver!r}.")
        values = _typed(asdict(self))
        values["solver"] = solver
        _refuse_unused(self.model, solver, values, recipe)
        for key, value in recipe.items():
            if values[key] is None:
                values[key] = value
        if values["ranker"] is None:
            values["ranker"] = "none" if self.model in RANKING_MODELS else "auto"
        if solver == "bayes" and values["burn_in"] is None:
            values["burn_in"] = values["epochs"] // 6  # the recipe's 10 of 60, kept in proportion
        cfg = TrainConfig(**values)
        cfg._check()
        return cfg

    def _check(self) -> None:
        """The values ``resolved`` filled in are in range (model and solver it checked itself)."""
        if self.ranker not in RANKERS:
            raise ConfigError(f"{option('ranker')} must be one of {', '.join(RANKERS)}, not {self.ranker!r}.")
        if self.model in RANKING_MODELS and self.ranker != "none":
            raise ConfigError(f"model {self.model!r} is itself a ranking model; leave {option('ranker')} unset.")
        if self.model in RANKING_MODELS and not 0 <= self.rating_weight <= 10:
            raise ConfigError(f"{option('rating_weight')} must be in [0, 10], not {self.rating_weight}.")
        if self.model == "ials" and not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise ConfigError(f"{option('alpha')} must be a positive number, not {self.alpha}.")
        if self.model == "ease" and not (self.wd > 0 and 0 <= self.dropout < 1):
            raise ConfigError(f"model 'ease' needs {option('wd')} (its lambda) > 0 and {option('dropout')} in [0, 1), "
                              f"not {self.wd} and {self.dropout}.")
        for name, most in SIZE_MAX.items():
            value = getattr(self, name)
            if name == "n_factors" and value is None and self.model == "nn":
                continue  # embedding sizes by fastai's rule of thumb
            if not isinstance(value, int) or not 1 <= value <= most:
                raise ConfigError(f"{option(name)} must be a whole number from 1 to {most:,}, not {value!r}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"{option('lr')} must be a positive number, not {self.lr:g}.")
        if not (self.wd >= 0 and math.isfinite(self.wd)):
            raise ConfigError(f"{option('wd')} must be zero or a positive number, not {self.wd:g}.")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"{option('momentum')} must be in [0, 1), not {self.momentum}.")
        parse_schedule(self.schedule, self.lr, self.epochs)
        if self.opt not in OPTIMIZERS:
            raise ConfigError(f"{option('opt')} must be one of {', '.join(OPTIMIZERS)}, not {self.opt!r}.")
        if self.seed is not None and not (isinstance(self.seed, numbers.Integral) and 0 <= self.seed <= SEED_MAX):
            raise ConfigError(f"{option('seed')} must be a whole number from 0 to {SEED_MAX}, not {self.seed!r}.")
        check_valid_pct(self.valid_pct)
        if self.valid_by not in VALID_BY:
            raise ConfigError(f"{option('valid_by')} must be one of {', '.join(VALID_BY)}, not {self.valid_by!r}.")
        if self.wd_mode not in ("l2", "decoupled"):
            raise ConfigError(f"{option('wd_mode')} must be l2 or decoupled, not {self.wd_mode!r}.")
        if self.solver == "sgd" and self.wd_mode != "l2":
            raise ConfigError(f"solver 'sgd' applies weight decay as grad += wd * param; set {option('wd_mode')} "
                              f"to l2.")
        if self.loss not in ("mse", "rmse"):
            raise ConfigError(f"{option('loss')} must be mse or rmse, not {self.loss!r}.")
        low_high = self.y_range is not None and self.y_range[0] < self.y_range[1]
        if self.y_range is not None and not (low_high and all(map(math.isfinite, self.y_range))):
            raise ConfigError(f"{option('y_range')} must be LOW HIGH with LOW < HIGH, not {self.y_range}.")
        if self.solver == "bayes" and not (isinstance(self.burn_in, int) and 0 <= self.burn_in < self.epochs):
            raise ConfigError(f"{option('burn_in')} must be a whole number from 0 to epochs - 1, not {self.burn_in!r}.")
        if self.model == "nn" and (not self.layers or any(not isinstance(h, int) or not 1 <= h <= SIZE_MAX["n_factors"]
                                                          for h in self.layers)):
            raise ConfigError(f"{option('layers')} must be one or more whole numbers from 1 to "
                              f"{SIZE_MAX['n_factors']:,}, not {self.layers!r}.")
        if self.model == "nn" and not 0 <= self.dropout < 1:
            raise ConfigError(f"{option('dropout')} must be in [0, 1), not {self.dropout}.")

    def to_dict(self) -> dict:
        return asdict(self)

    def saved(self) -> dict:
        """The options this (resolved) model and solver read, and those every run has: what ``model.json`` keeps (a
        Bayesian model's ``lr`` or ``opt`` would say they applied)."""
        keep = {*used_options(self.model, self.solver, self.opt), *ALWAYS}
        return {k: v for k, v in self.to_dict().items() if k in keep}

    def summary(self) -> str:
        """The settings this model and solver use, as ``name value`` pairs (for headers)."""
        uses = [k for k in used_options(self.model, self.solver, self.opt) if getattr(self, k) is not None]
        shown = {k: getattr(self, k) for k in uses}
        return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"Unknown training option(s): {', '.join(sorted(unknown))}.")
        d = dict(d)
        for key in ("y_range", "layers"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


# Tuned on validation splits of ML-100K's training rows; see benchmarks/sgd_recipe_grid.py and accuracy.py --tune.
RECIPES: dict[tuple[str, str], dict] = {
    ("dot", "sgd"): dict(n_factors=100, epochs=60, lr=0.02, wd=0.12, wd_mode="l2", bs=1, schedule="cosine"),
    ("dot", "autograd"): dict(n_factors=50, epochs=10, lr=5e-3, wd=0.1, wd_mode="decoupled", bs=1024,
                               schedule="onecycle"),
    # closed-form solvers: an epoch is one sweep; lr, bs and schedule only keep the epoch loop uniform (see USES)
    ("dot", "als"): dict(n_factors=40, epochs=6, wd=0.14, lr=1.0, wd_mode="l2", bs=1, schedule="constant"),
    ("dot", "bayes"): dict(n_factors=10, epochs=60, wd=0.0, lr=1.0, wd_mode="l2", bs=1,
                           schedule="constant"),
    # ranking models (lr, bs, schedule, wd_mode unused): EASE's lambda is wd, its dropout emphasis is dropout;
    # iALS's ridge is wd. Tuned on validation carves of ML-100K's quickstart and u1..u5 training rows.
    ("ease", "closed"): dict(n_factors=1, epochs=1, wd=300.0, dropout=0.25, rating_weight=0.2, lr=1.0, wd_mode="l2",
                             bs=1, schedule="constant"),
    ("ials", "cg"): dict(n_factors=64, epochs=10, wd=40.0, alpha=5.0, rating_weight=0.2, lr=1.0, wd_mode="l2", bs=1,
                         schedule="constant"),
    ("nn", "autograd"): dict(epochs=8, lr=5e-3, wd=0.3, wd_mode="decoupled", bs=2048, schedule="onecycle",
                             layers=(100,), dropout=0.0, bn=False, implicit=True),
}

# The options each model and solver reads, besides model, solver, valid_pct, valid_by, seed, device and ranker.
USES: dict[tuple[str, str], tuple[str, ...]] = {
    ("dot", "bayes"): ("n_factors", "epochs", "burn_in"),
    ("dot", "als"): ("n_factors", "epochs", "wd"),
    ("dot", "sgd"): ("n_factors", "epochs", "lr", "wd", "wd_mode", "bs", "schedule", "y_range"),
    ("dot", "autograd"): ("n_factors", "epochs", "lr", "wd", "wd_mode", "opt", "momentum", "bs", "schedule", "loss",
                          "y_range"),
    ("nn", "autograd"): ("n_factors", "epochs", "lr", "wd", "wd_mode", "opt", "momentum", "bs", "schedule", "loss",
                         "y_range", "layers", "dropout", "bn", "implicit"),
    ("ease", "closed"): ("wd", "dropout", "rating_weight"),
    ("ials", "cg"): ("n_factors", "epochs", "wd", "alpha", "rating_weight"),
}
ALWAYS = ("model", "solver", "valid_pct", "valid_by", "seed", "device", "ranker")
# why some options mean nothing to a solver (others: it does not use them)
LINEAR = "it fits the linear biased dot model; solvers 'sgd' and 'autograd' fit the sigmoid"
WHY_UNUSED: dict[str, dict[str, str]] = {
    "bayes": {"lr": "it samples in closed form", "wd": "its priors are learned from the data", "y_range": LINEAR},
    "als": {"lr": "it solves each sweep in closed form", "y_range": LINEAR},
    "closed": {"lr": "EASE is solved in closed form"},
    "cg": {"lr": "iALS is solved by conjugate gradients"},
}


# where an option does apply, for the refusal's sentence
WHERE_USED = {"layers": "model 'nn'", "bn": "model 'nn'", "implicit": "model 'nn'",
              "dropout": "models 'nn' and 'ease'", "burn_in": "solver 'bayes'",
              "alpha": "model 'ials' (ranker 'ials' beside a rating model is fit with its own recipe)",
              "rating_weight": "models 'ease' and 'ials' (a ranker is fit with its own recipe)",
              "opt": "solver 'autograd'", "loss": "solver 'autograd'"}


WHOLE = ("n_factors", "epochs", "bs", "seed", "burn_in")
REAL = ("lr", "wd", "momentum", "valid_pct", "dropout", "alpha", "rating_weight")


def _typed(values: dict) -> dict:
    """Whole and real numbers of any kind (``numpy.int64`` from a grid, say) as Python's; text or a flag where a
    number belongs is one sentence, not a ``TypeError`` further on."""
    for names, kind, word in ((WHOLE, numbers.Integral, "a whole number"), (REAL, numbers.Real, "a number")):
        for name in names:
            value = values[name]
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ConfigError(f"{option(name)} must be {word}, not {value!r}.")
            values[name] = (int if kind is numbers.Integral else float)(value)
    return values


RECIPE_SPREAD = (4.0, 1.13)  # the recipes were tuned on ratings from 1 to 5, whose standard deviation is 1.13


# How the rate and decay of a recipe tuned on 1-5 ratings move with the data's scale: each option is multiplied by
# c2 ** exponent, c2 the squared scale ratio (:func:`scale_ratio`). The sigmoid model's gradients (an error times the
# sigmoid's width) grow c**2 times for ratings c times as wide, so sgd keeps its optimum with ``wd * c**2`` and its
# steps with ``lr / c**2``. ALS's factors grow as sqrt(c) (their product as c): its ridge keeps the same weight
# against the squared error with ``wd * c``.
SCALED_OPTIONS = {("dot", "sgd"): {"wd": 1.0, "lr": -1.0}, ("dot", "als"): {"wd": 0.5}}


def scale_ratio(span: float, std: float) -> float:
    """``c**2`` for ratings spanning ``span`` with standard deviation ``std``, against ML-100K's 1-5: the product
    of the span's and the spread's ratios (exact for a rescaled 1-5 scale; planted continuous ratings have far-out
    extremes); 1 within 5 % of 1, or for ratings that do not vary."""
    c2 = span / RECIPE_SPREAD[0] * std / RECIPE_SPREAD[1]
    return c2 if c2 > 0 and abs(math.log(c2)) >= 0.05 else 1.0


def ratings_scale(ratings) -> float:
    """:func:`scale_ratio` of a ratings array (its span and standard deviation); 1 for no ratings."""
    if not len(ratings):
        return 1.0
    return scale_ratio(float(ratings.max()) - float(ratings.min()), float(ratings.std()))


def for_scale(given: TrainConfig, cfg: TrainConfig, c2: float) -> TrainConfig:
    """``cfg`` (``given`` resolved) with the recipe's rate and decay (:data:`SCALED_OPTIONS`) moved to ratings of
    :func:`scale_ratio` ``c2`` instead of ML-100K's, where ``given`` left them to the recipe. With the 1-5 recipe,
    sgd on a 0-100 scale reached RMSE 52 against the mean's 18.5, and on 0-1 it learned nothing; ALS on ML-100K's
    ratings times 20 scored 1.26 times the bias baseline's RMSE, 0.960 with its ridge moved (0.959 on 1-5)."""
    moved = SCALED_OPTIONS.get((cfg.model, cfg.solver))
    if not moved or c2 == 1.0:
        return cfg
    return replace(cfg, **{k: getattr(cfg, k) * c2 ** e for k, e in moved.items() if getattr(given, k) is None})


def recipe_value(model: str, solver: str, key: str, c2: float) -> float:
    """The recipe's ``key`` for ``model`` and ``solver`` on ratings of :func:`scale_ratio` ``c2``, moved as
    :func:`for_scale` moves it."""
    return RECIPES[(model, solver)][key] * c2 ** SCALED_OPTIONS.get((model, solver), {}).get(key, 0)


def used_options(model: str, solver: str, opt: str) -> list[str]:
    """The options ``model`` trained by ``solver`` reads (momentum only with the sgd optimizer)."""
    return [k for k in USES[(model, solver)] if k != "momentum" or opt == "sgd"]


def _refuse_unused(model: str, solver: str, values: dict, recipe: dict) -> None:
    """A ConfigError for the first option that ``model``/``solver`` would silently ignore: given a value that is
    neither the recipe's nor the option's default (a saved config holds those for every option)."""
    uses = set(used_options(model, solver, values["opt"])) | set(ALWAYS)
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    for key, value in values.items():
        if key in uses or value is None or value == recipe.get(key) or value == defaults.get(key):
            continue
        if key == "momentum" and key in USES[(model, solver)]:
            raise ConfigError(f"{option('momentum')} only applies with opt 'sgd'; leave it unset.")
        who = f"solver {solver!r}" if model == "dot" else f"model {model!r}"
        why = WHY_UNUSED.get(solver, {}).get(key)
        where = f", which is for {WHERE_USED[key]}" if key in WHERE_USED else ""
        said = f"has no {key.replace('_', ' ')} to set ({why})" if why else f"does not use {option(key)}{where}"
        raise ConfigError(f"{who} {said}; leave {option(key) if why else 'it'} unset.")


def parse_schedule(spec: str, lr: float, epochs: int):
    """Learning rate for a (fractional) epoch ``t`` in [0, epochs).

    ``constant``; ``cosine`` (anneal to 0); ``onecycle`` (warm up for a quarter, then anneal);
    ``step:E:LR[,E:LR...]`` switches to LR at epoch E (the seed's "lr 0.001 -> 0.01 @ 250" is
    ``--lr 0.001 --schedule step:250:0.01``).
    """
    name, _, rest = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if name == "constant":
        return lambda t: lr
    if name == "cosine":
        return lambda t: lr * 0.5 * (1 + math.cos(math.pi * t / max(epochs, 1)))
    if name == "onecycle":
        def onecycle(t: float) -> float:
            frac, warm = t / max(epochs, 1), 0.25
            if frac < warm:
                return lr / 25 + (lr - lr / 25) * 0.5 * (1 - math.cos(math.pi * frac / warm))
            return lr * 0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm))) + lr / 1e5
        return onecycle
    if name == "step" and rest:
        try:
            steps = sorted((int(e), float(v)) for e, v in (s.split(":") for s in rest.split(",")))
        except ValueError:
            steps = None
        if steps and not all(e >= 0 and 0 < v < math.inf for e, v in steps):
            raise ConfigError(f"{option('schedule')} {spec}: each step needs an epoch of 0 or more and a positive "
                              f"finite learning rate.")
        if steps:
            def step(t: float) -> float:
                value = lr
                for at, v in steps:
                    if t >= at:
                        value = v
                return value
            return step
    raise ConfigError(
        f"{option('schedule')} must be constant, cosine, onecycle or step:EPOCH:LR[,EPOCH:LR], not {spec!r}."
    )
