"""Interpretation: bias extremes, PCA ends, valid PNG pictures, CLI output."""

from __future__ import annotations

import json

import matplotlib.image
import matplotlib.pyplot
import numpy as np
import pytest
from tiny_rec import trained

from latentrec.cli import main
from latentrec.use.interpret import bias_extremes, component_ends, interpret, item_pca

PNG = b"\x89PNG\r\n\x1a\n"


def test_bias_extremes_are_the_lowest_and_highest_biases():
    rec, _, _ = trained()
    low, high = bias_extremes(rec, n=5)
    bias = rec.model.item_bias.detach().numpy()[1:]
    np.testing.assert_allclose(low["bias"], np.sort(bias)[:5], rtol=1e-6)
    np.testing.assert_allclose(high["bias"], np.sort(bias)[::-1][:5], rtol=1e-6)
    assert (low["n_ratings"] > 0).all() and low["title"].str.startswith("Movie").all()
    low, high = bias_extremes(rec, n=len(rec.items))  # more than the catalogue: half each, none at both ends
    assert len(low) == len(high) == (len(rec.items) - 1) // 2 and not set(low["item"]) & set(high["item"])
    ends = component_ends(item_pca(rec, n_items=7)[0], n=10)
    assert all(len(e["low"]) == 3 and not set(e["low"]) & set(e["high"]) for e in ends.values())


def test_pca_finds_the_planted_direction_and_its_ends():
    rec, _, _ = trained()
    pca, share = item_pca(rec, n_items=50)
    assert len(pca) == 50 and share[0] >= share[1] >= share[2] and sum(share) <= 1 + 1e-6
    assert share[0] > 0.3  # four planted clusters: the first axis carries a large share
    ends = component_ends(pca, 3)
    assert ends["pc1"]["low"][0] == pca.loc[pca["pc1"].idxmin(), "title"]
    twins = pca.copy()
    lowest, highest = twins["pc1"].idxmin(), twins["pc1"].idxmax()
    twins.loc[highest, "title"] = twins.loc[lowest, "title"]  # two items under one title tell apart by their ids
    ends = component_ends(twins, 3)
    assert ends["pc1"]["low"][0] == f"{twins.loc[lowest, 'title']} [{twins.loc[lowest, 'item']}]"
    assert ends["pc1"]["high"][0] == f"{twins.loc[lowest, 'title']} [{twins.loc[highest, 'item']}]"
    again, _ = item_pca(rec, n_items=50)
    np.testing.assert_allclose(again["pc1"], pca["pc1"], atol=1e-5)  # repeatable (seeded, sign fixed)


@pytest.mark.parametrize("columns", [480, 5000])  # fewer columns than items, and more
def test_pca_is_exact_for_wide_item_vectors(columns):
    """A Bayesian model's item vectors are its samples side by side, hundreds of columns: the randomized PCA's
    third component correlated 0.58 with the exact one on ML-100K (0.34 on 5,000 items)."""
    from dataclasses import replace

    import torch

    rec, _, _ = trained()
    wide = torch.randn(len(rec.items), columns, generator=torch.Generator().manual_seed(1))
    wide = wide * torch.linspace(3, 1, columns)  # components of slowly falling size: the hard case for a sketch
    model = replace(rec, model=type("Wide", (), {"item_factors": wide})())
    pca, share = item_pca(model, n_items=1000)
    top = pca["item"].map(rec.items.index).to_numpy()  # the rows item_pca took, in its order
    x = wide.double().numpy()[top]
    _, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    for c in range(3):
        exact = (x - x.mean(0)) @ vt[c]
        assert abs(np.corrcoef(exact, pca[f"pc{c + 1}"])[0, 1]) > 0.9999
    np.testing.assert_allclose(share, s[:3] ** 2 / (s ** 2).sum(), rtol=1e-6)


def test_interpret_writes_valid_pictures(tmp_path):
    rec, _, _ = trained()
    matplotlib.use("svg")  # the caller's backend (a notebook's inline one) ...
    r = interpret(rec, tmp_path / "pics", n=4, n_items=60, n_labels=10)
    assert matplotlib.get_backend() == "svg" and not matplotlib.pyplot.get_fignums()  # ... is left alone, no figure kept
    for name in ("item_pca", "training_curve"):
        path = r["pictures"][name]
        assert open(path, "rb").read(8) == PNG
        img = matplotlib.image.imread(path)
        assert img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 0.01
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["item_pca.png", "training_curve.png"]
    assert len(r["lowest_bias"]) == 4 and set(r["pca"]["ends"]) == {"pc1", "pc2", "pc3"}


def test_cli_interpret(tmp_path, capsys):
    rec, _, _ = trained()
    rec.save(tmp_path / "m")
    assert main(["interpret", str(tmp_path / "m"), "--out", str(tmp_path / "o"), "--json", "-n", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bias_source"] == "model" and len(out["highest_bias"]) == 3
    assert out["bias_unit"]  # biases differ in scale from model to model: the output says which it is
    assert main(["interpret", str(tmp_path / "m"), "--out", str(tmp_path / "o2")]) == 0
    text = capsys.readouterr().out
    assert "Lowest item bias" in text and "Component 1" in text
    assert main(["interpret", str(tmp_path / "m"), "--out", str(tmp_path / "o3"), "-n", "0"]) == 2
    assert "-n must be at least 1, not 0" in capsys.readouterr().err
    assert main(["interpret", str(tmp_path / "m"), "--out", str(tmp_path / "o3"), "--pca-items", "1"]) == 2
    assert "--pca-items must be at least 3, not 1" in capsys.readouterr().err  # the option, not the model
    assert main(["interpret", str(tmp_path / "m"), "--out", str(tmp_path / "o4"), "--labels", "0"]) == 0  # unlabeled


def test_bias_tables_leave_out_rarely_rated_items_by_default(tmp_path, capsys):
    """A model without shrinkage gives an item rated once a bias as extreme as its rating: by default the tables
    hold items with the popular list's least ratings (20, fewer where fewer than -n items have 20)."""
    rec, _, _ = trained()
    counts = rec.item_counts
    r = interpret(rec, tmp_path / "a", n=4, n_items=60, n_labels=0)
    assert r["min_ratings"] == min(20, int(np.sort(counts)[-4]))
    assert all(row["n_ratings"] >= r["min_ratings"] for row in r["lowest_bias"] + r["highest_bias"])
    assert interpret(rec, tmp_path / "b", n=4, n_items=60, n_labels=0, min_ratings=1)["min_ratings"] == 1
    rec.save(tmp_path / "m")
    (tmp_path / "file").write_text("x")
    assert main(["interpret", str(tmp_path / "m"), "--out", str(tmp_path / "file")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


def test_a_label_goes_where_it_covers_no_marked_item_and_stays_in_the_frame(tmp_path, monkeypatch):
    """Two marked items side by side: the more-rated one's label, right of its dot, would run over the other's, so
    it goes below (Star Wars lost its label to one spot tried)."""
    import pandas as pd

    from latentrec.use import interpret as module

    drawn = []
    monkeypatch.setattr(module, "save_figure", lambda fig, path: drawn.append(fig))
    pca = pd.DataFrame({"item": list("abc"), "title": ["A long title for the first", "B", "C"],
                        "n_ratings": [30, 20, 10], "pc1": [0.0, 0.02, 1.0], "pc2": [0.0, 0.0, 1.0]})
    module.plot_pca(pca, tmp_path / "p.png", n_labels=3)
    fig = drawn[0]
    ax, renderer = fig.axes[0], fig.canvas.get_renderer()
    labels = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert {"A long title for the first", "B", "C"} <= set(labels)  # "A" moved below, not left off
    dots = ax.transData.transform(pca[["pc1", "pc2"]].to_numpy())
    frame = ax.get_window_extent(renderer)
    for text, box in labels.items():
        own = pca["title"].tolist().index(text)
        assert not box.count_contains(np.delete(dots, own, axis=0))  # covers no other marked item
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1  # inside the plot


def test_labels_no_installed_font_draws_are_said_in_one_sentence(tmp_path, monkeypatch, caplog, recwarn):
    """Chinese and emoji titles were drawn as empty boxes, with one matplotlib warning per character at most."""
    import pandas as pd

    from latentrec.use import interpret as module

    monkeypatch.setattr(module, "label_fonts", lambda: ["DejaVu Sans"])  # a machine without CJK or emoji fonts
    pca = pd.DataFrame({"item": list("abc"), "title": ["中文电影", "Émile 🎬", "C"], "n_ratings": [30, 20, 10],
                        "pc1": [0.0, 0.5, 1.0], "pc2": [0.0, 0.3, 1.0]})
    with caplog.at_level("WARNING", logger="latentrec"):
        module.plot_pca(pca, tmp_path / "p.png", n_labels=3)
    [record] = caplog.records
    assert "5 characters of its labels are in no installed font and show as boxes" in record.getMessage()
    assert not [w for w in recwarn if "Glyph" in str(w.message)]


def test_whole_number_item_ids_come_back_as_recommend_gives_them(tmp_path):
    """Integers in the frames, so a merge with recommend's answer works; text in the JSON report, as everywhere."""
    from conftest import lowrank_ratings

    from latentrec import TrainConfig, fit, recommend

    df, _ = lowrank_ratings(n_users=40, n_items=30)
    df = df.assign(user=df.user.str[1:].astype(int), item=df.item.str[1:].astype(int))
    rec, _ = fit(df, config=TrainConfig(solver="als", epochs=2, ranker="none", device="cpu"))
    low, _ = bias_extremes(rec, n=30)
    listed = recommend(rec, 1, n=30)
    assert low["item"].dtype == listed["item"].dtype == item_pca(rec, n_items=10)[0]["item"].dtype == np.int64
    assert len(low.merge(listed, on="item")) > 0
    report = interpret(rec, tmp_path / "o", n=3)
    assert all(isinstance(row["item"], str) for row in report["lowest_bias"] + report["highest_bias"])
