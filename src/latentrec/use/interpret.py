"""What the model learned: item biases, a PCA map of the item factors, and the training curve.

The item bias is what an item gets "even after accounting for who rates it" (the seed's
"Interpreting Embedding and Bias"): a low bias means even users who like this kind of item
rate it low. The PCA (exact) of the factors of the most-rated items gives
axes along which taste varies; the items at both ends of each axis show what it means.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latentrec.atomic import atomic_path, make_folder
from latentrec.errors import ConfigError, DataError
from latentrec.use.recommender import Recommender, check_recommender
from latentrec.use.records import records
from latentrec.use.similar import item_vectors
from latentrec.use.topn import check_n, least_ratings

log = logging.getLogger(__name__)
# fonts that hold what DejaVu Sans lacks (CJK titles, emoji), used for labels where one is installed
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Source Han Sans", "WenQuanYi Zen Hei", "Microsoft YaHei",
                  "MS Gothic", "AppleGothic", "Noto Color Emoji", "Noto Emoji", "Segoe UI Emoji", "Apple Color Emoji")


def item_biases(rec: Recommender) -> tuple[np.ndarray, str]:
    """The model's learned item biases, or the baseline's when the model has none; and which it is."""
    b = getattr(rec.model, "item_bias", None)
    if isinstance(b, torch.Tensor) and getattr(rec.model, "use_bias", True):
        return b.detach().float().cpu().numpy(), "model"
    return np.asarray(rec.baseline[2], np.float32), "baseline"


def bias_unit(rec: Recommender) -> str:
    """What a number in the bias tables means: biases differ in scale from model to model."""
    if item_biases(rec)[1] == "baseline":
        return "rating points above or below the mean rating"
    if getattr(rec.model, "y_range", None) is not None:
        return "before the sigmoid that maps scores to ratings"
    return "in rating points, the mean rating included"


def _items(rec: Recommender, idx: np.ndarray, counts: np.ndarray) -> pd.DataFrame:
    """The items ``idx`` with their ids as ``recommend`` gives them (integers where every id is a whole number)."""
    ids = rec.items.decode(idx)
    return pd.DataFrame({"item": rec.items.typed(ids), "title": [rec.titles.get(i, "") for i in ids],
                         "n_ratings": counts[idx]})


def per_end(n: int, count: int) -> int:
    """How many of ``count`` items to list at each end of an order: ``n``, or half of them in a small catalogue,
    so that no item is at both ends (one item: it is)."""
    return min(n, max(count // 2, 1))


def bias_extremes(rec: Recommender, n: int = 10, min_ratings: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``n`` items with the lowest and the highest bias (lowest/highest first) among items with at least
    ``min_ratings`` ratings, by default the popular list's :func:`~latentrec.use.topn.least_ratings` (20 on a big
    enough catalogue: a model without shrinkage gives an item rated once a bias as extreme as that one rating;
    :func:`per_end`: fewer in a small catalogue). What a bias measures differs from model to model (rating points,
    or a logit before the sigmoid): :func:`bias_unit` says it in words."""
    check_recommender(rec, "bias_extremes")
    check_n(n, "n")
    min_ratings = least_ratings(rec, min_ratings, n)
    bias, _ = item_biases(rec)
    counts = rec.item_counts
    ok = np.flatnonzero(counts >= max(min_ratings, 1))
    order = ok[np.argsort(bias[ok], kind="stable")]
    n = per_end(n, len(ok))
    frames = []
    for idx in (order[:n], order[::-1][:n]):
        df = _items(rec, idx, counts)
        df.insert(2, "bias", bias[idx])
        frames.append(df)
    return frames[0], frames[1]


def item_pca(rec: Recommender, n_items: int = 1000, q: int = 3) -> tuple[pd.DataFrame, list[float]]:
    """PCA of the item vectors of the ``n_items`` most-rated items: a table with ``pc1..pcq`` per item,
    and each component's share of the variance among those items.
    """
    check_recommender(rec, "item_pca")
    check_n(n_items, "n_items")
    if not isinstance(q, (int, np.integer)) or q < 2:
        raise ConfigError(f"q, the components of the map, must be a whole number of at least 2, not {q!r}.")
    counts = rec.item_counts
    top = np.argsort(-counts, kind="stable")[:n_items]
    top = top[counts[top] > 0]
    vectors = item_vectors(rec.model if rec.model is not None else rec.ranker).float().cpu()[torch.from_numpy(top)]
    q = min(q, len(vectors) - 1, vectors.shape[1])  # n items centered span n - 1 directions at most
    if q < 2:
        raise DataError("A map of the item factors needs at least two factors and three rated items; "
                        "this model has too few.")
    centered = (vectors - vectors.mean(0)).double()
    # exact (torch.pca_lowrank's randomized one was far off for a Bayesian model's hundreds of sample columns),
    # from the eigenvectors of the smaller Gram matrix: 10x quicker than an SVD of 20,000 items x 600 columns
    if centered.shape[1] <= centered.shape[0]:
        power, axes = torch.linalg.eigh(centered.T @ centered)
        proj = centered @ axes[:, -q:].flip(1)
    else:  # more columns than items: the items' own Gram matrix, whose eigenvectors are the scores' directions
        power, axes = torch.linalg.eigh(centered @ centered.T)
        proj = axes[:, -q:].flip(1) * power[-q:].flip(0).clamp(min=0).sqrt()
    power = power.flip(0).clamp(min=0)  # largest first; rounding may leave a zero one a hair below 0
    flip = torch.sign(proj.gather(0, proj.abs().argmax(0, keepdim=True)))  # largest |score| positive
    proj = (proj * flip).float().numpy()
    total = float(power.sum())
    share = [float(p) / total if total else 0.0 for p in power[:q]]
    pcs = pd.DataFrame(proj[:, :q], columns=[f"pc{c + 1}" for c in range(q)])
    return pd.concat([_items(rec, top, counts), pcs], axis=1), share


def component_ends(pca: pd.DataFrame, n: int = 10) -> dict[str, dict[str, list[str]]]:
    """Titles (or ids) of the ``n`` items at the low and high end of each component; a title two items share gets
    the item's id (ML-100K lists "Chasing Amy (1997)" under two ids)."""
    shared = pca["title"].duplicated(keep=False) & (pca["title"] != "")
    label = pca["title"].where(~shared, pca["title"] + " [" + pca["item"].astype(str) + "]")
    label = label.where(pca["title"] != "", pca["item"].astype(str))
    n = per_end(n, len(pca))
    ends = {}
    for col in [c for c in pca.columns if c.startswith("pc")]:
        order = np.argsort(pca[col].to_numpy(), kind="stable")
        ends[col] = {"low": label.iloc[order[:n]].tolist(), "high": label.iloc[order[::-1][:n]].tolist()}
    return ends


def figure(figsize: tuple[float, float]):
    """A new matplotlib ``(figure, axes)`` outside pyplot: no backend is chosen or changed (a notebook's inline
    plots stay as they are) and nothing is kept once it is saved; matplotlib loads only when a picture is made."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # drawn by Agg, whatever the session's backend
    return fig, fig.subplots()


def save_figure(fig, path: Path) -> None:
    """Save ``fig`` through a temporary file, so no half-written picture remains."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    except OSError as e:
        raise DataError(f"Cannot write {path}: {e.strerror or e}.") from None


LABEL_SPOTS = ((3, 2), (-3, 2), (3, -2), (-3, -2))  # a label's offsets from its dot, in points, tried in turn


def label_fonts() -> list[str]:
    """DejaVu Sans, then each installed font of :data:`FALLBACK_FONTS` for the characters it lacks."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(name for name in FALLBACK_FONTS if name in installed)]


@contextmanager
def said_missing_glyphs(path: Path):
    """Drawing a picture whose labels may hold characters no installed font has: said once, in a sentence, rather
    than as one matplotlib warning per character."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    missing = set()
    for w in caught:
        if glyph := re.match(r"Glyph (\d+)", str(w.message)):
            missing.add(glyph.group(1))
        else:  # any other warning goes on as it was
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if missing:
        log.warning("%s: %d characters of its labels are in no installed font and show as boxes; a font such as "
                    "Noto Sans CJK (fonts-noto-cjk) draws them.", path, len(missing))


def plot_pca(pca: pd.DataFrame, path: Path, n_labels: int = 50, share: list[float] | None = None) -> Path:
    """Scatter of the first two components, the ``n_labels`` most-rated items marked and, where a label covers
    no other marked item and no label already written (more-rated first), labeled."""
    with said_missing_glyphs(path):
        return _plot_pca(pca, path, n_labels, share)


def _plot_pca(pca: pd.DataFrame, path: Path, n_labels: int, share: list[float] | None) -> Path:
    fig, ax = figure((12, 10))
    ax.scatter(pca["pc1"], pca["pc2"], s=6, c="#bbbbbb")
    top = pca.nlargest(n_labels, "n_ratings", keep="first")
    ax.scatter(top["pc1"], top["pc2"], s=14, c="#1f77b4")
    pct = [f" ({100 * s:.0f}% of variance)" for s in share] if share else ["", ""]
    ax.set_xlabel(f"component 1{pct[0]}")
    ax.set_ylabel(f"component 2{pct[1]}")
    ax.autoscale_view()  # the axes' final limits, before anything is measured in pixels
    renderer, placed, fonts = fig.canvas.get_renderer(), [], label_fonts()
    frame = ax.get_window_extent(renderer)
    dots = ax.transData.transform(top[["pc1", "pc2"]].to_numpy())  # where the marked items are drawn, in pixels
    for k, (_, row) in enumerate(top.iterrows()):
        others = np.delete(dots, k, axis=0)
        for dx, dy in LABEL_SPOTS:  # right of the dot first, then left, above or below
            label = ax.annotate(row["title"] or row["item"], (row["pc1"], row["pc2"]), fontsize=7, xytext=(dx, dy),
                                textcoords="offset points", ha="left" if dx > 0 else "right",
                                va="bottom" if dy > 0 else "top", fontfamily=fonts)
            box = label.get_window_extent(renderer).padded(2)  # a dot's radius: a label touching a dot covers it
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not box.count_contains(others) and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            label.remove()
    marked = f"; the {len(top)} most-rated marked, {len(placed)} labeled (those that fit)" if len(top) else ""
    ax.set_title(f"PCA of the item factors: the {len(pca)} most-rated items{marked}")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return path


def plot_history(history: list[dict], path: Path, best_epoch: int | None = None, refit: dict | None = None) -> Path:
    """Train and validation RMSE by epoch, the best validation epoch marked (the run kept its weights); with
    ``refit`` (the model was trained again on every row for that many epochs) the title says that these are the
    held-out run's."""
    fig, ax = figure((7, 4.5))
    epochs = [h["epoch"] for h in history]
    for key, label in (("train_rmse", "train"), ("valid_rmse", "validation")):
        pts = [(e, h[key]) for e, h in zip(epochs, history) if h.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=label)
    if best_epoch is not None and any(h.get("valid_rmse") is not None for h in history):
        ax.axvline(best_epoch, color="#888888", ls="--", lw=1, label=f"best validation epoch ({best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE")
    ax.set_title("Training curve" if refit is None else f"Training curve of the held-out run (the saved model: "
                 f"{refit.get('epochs', '?')} epochs on all {refit.get('n_train', 0):,} ratings)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return path


PICTURES = ("item_pca", "training_curve")


def interpret(rec: Recommender, out: str | os.PathLike, n: int = 10, n_items: int = 1000,
              n_labels: int = 50, min_ratings: int | None = None) -> dict:
    """Bias extremes, PCA ends and pictures (``item_pca.png``, ``training_curve.png``) written to ``out``. The bias
    tables leave out items with fewer than ``min_ratings`` ratings (:func:`bias_extremes`). A model without item
    vectors (EASE) gets no PCA (``no_pca`` says why); a picture of ``out`` this model has none of, an earlier run's,
    is removed (``removed``)."""
    check_recommender(rec, "interpret")
    check_n(n_items, "n_items")  # here too: a ConfigError of item_pca's is read as "no map" below
    min_ratings = least_ratings(rec, min_ratings, n)
    low, high = bias_extremes(rec, n, min_ratings)
    try:
        pca, share = item_pca(rec, n_items)
        no_map = None
    except (ConfigError, DataError) as e:  # no item vectors (EASE), or too few: the biases still say something
        pca, share, no_map = None, [], str(e)
    out = make_folder(out)
    result = {
        "bias_source": item_biases(rec)[1],
        "bias_unit": bias_unit(rec),
        "min_ratings": min_ratings,
        "lowest_bias": records(low),
        "highest_bias": records(high),
        "pca": None if pca is None else {"n_items": len(pca), "variance_share": share,
                                         "ends": component_ends(pca, n)},
        "pictures": {},
    }
    if pca is None:
        result["no_pca"] = no_map
    else:
        result["pictures"]["item_pca"] = str(plot_pca(pca, out / "item_pca.png", n_labels, share))
    if rec.history:
        curve = plot_history(rec.history, out / "training_curve.png", rec.info.get("best_epoch"), rec.info.get("refit"))
        result["pictures"]["training_curve"] = str(curve)
    stale = [out / f"{name}.png" for name in PICTURES if name not in result["pictures"]]
    stale = [path for path in stale if path.is_file()]  # an earlier run's: read as this model's, it would mislead
    for path in stale:
        path.unlink()
    result["removed"] = list(map(str, stale))
    return result
