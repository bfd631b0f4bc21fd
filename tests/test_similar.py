"""Similar items: planted neighbours are found; titles match case-insensitively; ambiguity lists candidates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_rec import tiny_rec, trained

from latentrec.cli import main
from latentrec.errors import ConfigError, DataError
from latentrec.use.similar import find_item, item_vectors, similar_items, title_matches

TITLES = {"i1": "Star Wars (1977)", "i2": "Return of the Jedi (1983)", "i3": "Godfather, The (1972)",
          "i4": "Godfather: Part II, The (1974)", "i5": "Toy Story (1995)"}


def hand_rec():
    Q = [[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 2.0, 0], [0, 0, 1]]
    return tiny_rec([[1, 1, 1]], Q, titles=TITLES, rated={1: [1, 2, 3, 4, 5]})


def test_cosine_neighbours_of_hand_built_factors():
    sims = similar_items(hand_rec(), "i3", n=4)
    assert list(sims["item"]) == ["i4", "i2", "i1", "i5"]
    expected = (0.1 * 0 + 2.0 * 1) / np.hypot(0.1, 2.0)
    assert sims["similarity"][0] == pytest.approx(expected, abs=1e-6)
    assert "i3" not in set(sims["item"]) and sims["similarity"].is_monotonic_decreasing


def test_planted_neighbours_are_found_after_training():
    rec, _, clusters = trained()
    same = [clusters[j] == clusters[i] for i in list(clusters)[:30] for j in similar_items(rec, i, 5)["item"]]
    assert np.mean(same) > 0.9


def test_min_ratings_filters_neighbours():
    rec, _, _ = trained()
    counts = np.bincount(rec.rated_items, minlength=len(rec.items))
    cut = int(np.median(counts[1:]))
    sims = similar_items(rec, "i1", 20, min_ratings=cut)
    assert (sims["n_ratings"] >= cut).all()


def test_find_item_by_title():
    rec = hand_rec()
    assert find_item(rec, "star wars") == "i1"
    assert find_item(rec, "STAR WARS (1977)") == "i1"
    assert find_item(rec, "The Godfather") == "i3"
    assert find_item(rec, "jedi") == "i2"
    with pytest.raises(DataError, match="2 titles match.*i3: Godfather, The.*i4: Godfather: Part II"):
        find_item(rec, "godfather")
    with pytest.raises(DataError, match="No item title"):
        find_item(rec, "Alien")
    assert find_item(rec, "(1977)") == "i1"  # a year alone is looked for, not read as an empty title
    assert title_matches(rec, "(19") == ["i1", "i2", "i3", "i4", "i5"] and title_matches(rec, "(1983)") == ["i2"]


def test_a_title_given_as_an_item_id_is_pointed_at_its_item():
    rec = hand_rec()
    with pytest.raises(DataError, match=r"'Star Wars' is not an item id .*; it is the title of item i1 \(Star Wars"):
        similar_items(rec, "Star Wars")
    for not_a_title in ("godfather", "Toy"):  # two whole titles; part of one: no hint
        with pytest.raises(DataError, match=rf"'{not_a_title}' is not an item id of the model \(.*\)\.$"):
            similar_items(rec, not_a_title)


def test_models_without_item_vectors_get_a_clear_error():
    with pytest.raises(ConfigError, match="no item factors"):
        item_vectors(torch.nn.Linear(2, 2))


def test_collab_nn_items_are_compared_by_the_embeddings_its_head_sees():
    from latentrec.models.nn import CollabNN

    m = CollabNN(4, 5, 3, 3, implicit=True)
    m.set_rated(np.array([1, 1, 2, 3]), np.array([1, 2, 2, 4]))
    with torch.no_grad():
        m.item_implicit.normal_()
    torch.testing.assert_close(item_vectors(m), m.embeddings()[1])
    assert not torch.equal(item_vectors(m), m.item_factors)  # the implicit part is in


def test_cli_similar(tmp_path, capsys):
    hand_rec().save(tmp_path / "m")
    assert main(["similar", str(tmp_path / "m"), "--title", "star wars", "-n", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["item"] == "i1" and [s["item"] for s in out["similar"]] == ["i2", "i4"]
    assert out["compared_by"] == "dot model"  # as the table says
    assert main(["similar", str(tmp_path / "m"), "--item", "i1", "-n", "2"]) == 0
    assert "by the dot model's item vectors" in " ".join(capsys.readouterr().out.split())
    assert main(["similar", str(tmp_path / "m"), "--title", "godfather"]) == 2
    assert "Godfather: Part II" in capsys.readouterr().err
    assert main(["similar", str(tmp_path / "m"), "--item", "nope"]) == 2


def test_a_min_ratings_no_item_reaches_is_one_sentence(tmp_path, capsys):
    hand_rec().save(tmp_path / "m")
    assert main(["similar", str(tmp_path / "m"), "--item", "i1", "--min-ratings", "100000"]) == 2
    assert "--min-ratings) 100000 leaves no item: the most-rated item has" in capsys.readouterr().err
