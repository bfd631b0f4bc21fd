"""Similar items, and finding items by title.

A model dir with a ranker compares items as the ranker does (EASE: column ``i`` of its item x item
matrix, how much rating each item predicts picking ``i``; iALS: cosine of its item factors); a
rating model alone, or beside the popularity ranker (one order for everyone, no notion of alike), by
the cosine similarity of its learned item vectors.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

from latentrec.errors import ConfigError, DataError, ModelCapabilityError, clip
from latentrec.use.recommender import Recommender, check_recommender
from latentrec.use.topn import check_n, least_ratings


def item_vectors(model: torch.nn.Module) -> torch.Tensor:
    """The ``(n_items, k)`` item vectors of a model: the embeddings it feeds its head (CollabNN's include
    the implicit part, what being rated by whom says about an item), else its item factors."""
    if hasattr(model, "embeddings"):
        with torch.no_grad():
            return model.embeddings()[1].detach()
    v = getattr(model, "item_factors", None)
    if isinstance(v, torch.Tensor) and v.dim() == 2:
        return v.detach()
    raise ConfigError(f"This model ({getattr(model, 'kind', type(model).__name__)!r}) has no item factors or "
                      f"item embedding (vectors to map items by or compare them).")


def _normal(title: str) -> str:
    """Lower case, year removed, a trailing ', The'/', A'/', An' moved to the front."""
    t = re.sub(r"\s*\(\d{4}\)\s*$", "", title.strip()).casefold()
    m = re.match(r"^(.*), (the|a|an|les|la|le|il|el|das|der|die)$", t)
    return f"{m.group(2)} {m.group(1)}" if m else t


def find_item(rec: Recommender, title: str) -> str:
    """The raw id of the one known item whose title matches ``title`` (case-insensitive).

    An exact title (with or without its year, articles either way round) wins; otherwise the
    titles containing ``title``. Zero or several matches raise an error listing candidates.
    """
    if not title.strip():
        raise DataError("The title to look for (--title) is empty.")
    if not any(i in rec.items for i in rec.titles):
        raise DataError("This model has no titles; give the item's id (--item ID).")
    matches = title_matches(rec, title)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DataError(f"No item title contains {title!r}.")
    listed = "; ".join(f"{i}: {rec.titles[i]}" for i in matches[:10])
    more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
    raise DataError(f"{len(matches)} titles match {title!r}: {listed}{more}. Give the item's id (--item ID) or a "
                    f"longer title.")


def title_matches(rec: Recommender, title: str, exact_wins: bool = True) -> list[str]:
    """Raw ids of the known items whose title matches ``title`` (case-insensitive), most-rated first: the
    exact titles (with or without the year, articles either way round), then the titles containing it --
    only the exact ones if there are any and ``exact_wins``.
    """
    query = title.strip().casefold()
    if not query:
        return []
    normal = _normal(title) or query  # "(1977)" alone is a year to look for, not an empty title
    known = [(i, t) for i, t in rec.titles.items() if i in rec.items]
    exact = [i for i, t in known if t.casefold() == query or _normal(t) in (query, normal)]
    groups = [exact]
    if not (exact and exact_wins):
        seen = set(exact)
        groups.append([i for i, t in known if (query in t.casefold() or normal in _normal(t)) and i not in seen])
    counts = rec.item_counts
    return [g[k] for g in groups if g for k in np.argsort(-counts[rec.items.encode(g)], kind="stable")]


def title_hint(rec: Recommender, text: str) -> str:
    """``"; it is the title of item ID (TITLE)"`` where ``text`` is one known item's whole title (with or without
    its year, articles either way round; an id that a title merely contains, "12", gets none), else empty."""
    query = text.strip().casefold()
    whole = [i for i in title_matches(rec, text) if rec.titles[i].casefold() == query
             or _normal(rec.titles[i]) in (query, _normal(text))]
    return f"; it is the title of item {whole[0]} ({rec.titles[whole[0]]})" if len(whole) == 1 else ""


def similar_items(rec: Recommender, item: str, n: int = 10, min_ratings: int = 0) -> pd.DataFrame:
    """The ``n`` items most similar to ``item`` (see the module docstring), among items with at least
    ``min_ratings`` training ratings (rarely rated items have short, noisy vectors).
    """
    check_recommender(rec, "similar_items")
    check_n(n)
    idx = rec.items.index(item)
    if idx == 0:
        raise DataError(f"Item {clip(str(item))!r} is not an item id of the model (an item with no training ratings "
                        f"is not){title_hint(rec, str(item))}.")
    if rec.ranker is not None and rec.ranker.compares_items:
        sim = rec.ranker.similarity(idx).float()
    elif rec.model is None:
        raise ModelCapabilityError(f"Similar items need a rating model's item vectors or a ranker that compares "
                                   f"items, and this model dir holds only the {rec.ranker.kind} ranker, which gives "
                                   f"every user the same order.")
    else:
        v = item_vectors(rec.model).float()
        unit = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
        sim = unit @ unit[idx]
    counts = rec.item_counts
    if min_ratings:
        least_ratings(rec, min_ratings)  # one sentence when no item has that many
    sim[torch.from_numpy(counts < min_ratings).to(sim.device)] = -torch.inf
    sim[[0, idx]] = -torch.inf
    k = min(n, int(torch.isfinite(sim).sum()))
    top = torch.topk(sim, k)
    ids = rec.items.decode(top.indices.cpu().numpy())
    return pd.DataFrame({
        "rank": np.arange(1, k + 1),
        "item": rec.items.typed(ids),
        "title": [rec.titles.get(i, "") for i in ids],
        "similarity": top.values.cpu().numpy(),
        "n_ratings": counts[top.indices.cpu().numpy()],
    })
