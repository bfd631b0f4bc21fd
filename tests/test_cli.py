import json

import numpy as np
import pandas as pd
import pytest
import torch

from latentrec.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ratings_csv(tmp_path):
    from conftest import lowrank_ratings

    df, _ = lowrank_ratings(n_users=60, n_items=40, density=0.5)
    path = tmp_path / "ratings.csv"
    df.to_csv(path, index=False)
    return path


def test_train_evaluate_predict_json(capsys, tmp_path, ratings_csv):
    out_dir = tmp_path / "m"
    code, out, _ = run(capsys, "train", "--data", str(ratings_csv), "--epochs", "3", "--n-factors", "4",
                       "--test", str(ratings_csv), "--out", str(out_dir), "--json", "--device", "cpu")
    assert code == 0
    result = json.loads(out)
    assert result["model"] == str(out_dir) and result["train_seconds"] > 0
    assert {"rmse", "mae", "n", "n_unknown", "baselines"} <= set(result["test"])
    assert (out_dir / "model.safetensors").is_file() and (out_dir / "model.json").is_file()

    code, out, _ = run(capsys, "evaluate", str(out_dir), "--data", str(ratings_csv), "--json")
    assert code == 0
    ev = json.loads(out)
    assert ev["n"] == result["test"]["n"] and abs(ev["rmse"] - result["test"]["rmse"]) < 1e-6
    assert ev["n_seen"] == ev["n"]  # scored on the very rows it was built from
    code, out, _ = run(capsys, "evaluate", str(out_dir), "--data", str(ratings_csv), "--metrics", "rmse")
    note = " ".join(out.split())
    assert code == 0 and "say little about new data." in note and "ranking" not in note  # none was asked for
    off = tmp_path / "off.csv"
    off.write_text("user,item,rating\nu1,i1,99\nu2,i2,-3\nnobody,i3,2\n")
    code, out, _ = run(capsys, "evaluate", str(out_dir), "--data", str(off))
    assert code == 0 and "Note: 2 ratings lie outside the model's scale" in out

    code, out, _ = run(capsys, "predict", str(out_dir), "--user", "u1", "--item", "nobody", "--json")
    assert code == 0
    pred = json.loads(out)
    assert pred["known_user"] is True and pred["known_item"] is False

    preds = tmp_path / "preds.csv"
    code, _, _ = run(capsys, "predict", str(out_dir), "--data", str(ratings_csv), "--out", str(preds))
    assert code == 0 and preds.read_text().startswith("user,item,title,prediction,known_user,known_item")


def test_train_refits_on_the_validation_rows_it_held_out(capsys, tmp_path, ratings_csv):
    """The validation rows measure the recipe, then the model saved is trained on every row of --data (for the best
    epoch's number of epochs): a user whose ratings all fell in the validation rows is known; --valid FILE is not
    refit on."""
    from latentrec.use.recommender import Recommender

    df = pd.read_csv(ratings_csv)
    df = pd.concat([df, pd.DataFrame({"user": ["solo"], "item": [df.item[0]], "rating": [4.0]})])
    data = tmp_path / "with_solo.csv"
    df.to_csv(data, index=False)
    shown = []  # the refit happens once: held-out figures, then the saved model's
    for seed in range(1, 40):  # a seed whose 20 % holds the one-rating user out
        code, out, _ = run(capsys, "train", "--data", str(data), "--epochs", "4", "--n-factors", "4", "--seed",
                           str(seed), "--out", str(tmp_path / "m"), "--json", "--device", "cpu")
        result = json.loads(out)
        if result["valid"]["n_unknown_users"]:
            shown.append(result)
            break
    assert code == 0 and shown, "no seed held the one-rating user out"
    refit = shown[0]["refit"]
    assert refit["n_train"] == len(df) and refit["epochs"] == shown[0]["best_epoch"]
    rec = Recommender.load(tmp_path / "m")
    assert "solo" in rec.users and len(rec.rated_items) == len(df)
    assert rec.info["refit"]["n_train"] == len(df) and rec.info["n_train"] < len(df)  # the held-out run's figures
    assert rec.config["valid_pct"] == 0.2 and rec.config["epochs"] == 4  # what was given: --config reruns both
    from latentrec.config import TrainConfig
    from latentrec.data.ratings import load_ratings
    from latentrec.training.fit import fit, refit_config

    ratings = load_ratings(data)  # the README's Python refit gives the weights train saved
    cfg = TrainConfig(epochs=4, n_factors=4, seed=seed, device="cpu")
    held, trainer = fit(ratings, config=cfg)
    again = fit(ratings, config=refit_config(cfg, trainer.best_epoch, held.ranker_option))[0]
    assert torch.equal(again.model.item_factors, rec.model.item_factors)
    valid = tmp_path / "valid.csv"
    df.head(50).to_csv(valid, index=False)
    code, out, _ = run(capsys, "train", "--data", str(data), "--valid", str(valid), "--epochs", "2", "--n-factors",
                       "4", "--out", str(tmp_path / "m2"), "--json", "--device", "cpu")
    assert code == 0 and "refit" not in json.loads(out)


@pytest.mark.parametrize("refit_ends", ["diverged", "interrupted", "interrupted while saved"])
def test_a_refit_that_fails_leaves_the_held_out_model_saved(capsys, tmp_path, ratings_csv, monkeypatch, refit_ends):
    """The held-out model is saved before the refit: a refit that diverges or is stopped leaves it, and says so."""
    import latentrec.training.fit as fitting
    from latentrec.use.recommender import Recommender

    real, calls, saves = fitting.fit, [], []

    def fit(*a, **k):
        calls.append(a[2])  # the config
        if len(calls) == 2 and refit_ends == "interrupted":
            raise KeyboardInterrupt
        rec, trainer = real(*a, **k)
        if len(calls) == 2 and refit_ends == "diverged":
            trainer.diverged = "Training diverged in epoch 2 (the weights became infinite or NaN)."
        return rec, trainer

    monkeypatch.setattr(fitting, "fit", fit)
    real_save = Recommender.save

    def save(self, *a, **k):  # the refit's save, stopped before it wrote (the held-out model is in the dir)
        saves.append(1)
        if len(saves) == 2 and refit_ends == "interrupted while saved":
            raise KeyboardInterrupt
        return real_save(self, *a, **k)
    monkeypatch.setattr(Recommender, "save", save)
    code, out, err = run(capsys, "train", "--data", str(ratings_csv), "--solver", "bayes", "--epochs", "12",
                         "--burn-in", "6", "--n-factors", "4", "--out", str(tmp_path / "m"), "--device", "cpu")
    assert code == (0 if refit_ends == "diverged" else 130)
    assert "Evaluation on the validation rows" in out  # printed before the refit, which a stop does not lose
    if refit_ends == "interrupted while saved":
        assert "interrupted during the refit" in err and "was saved to" not in err, err
        return
    assert f"{tmp_path / 'm'} keeps the model trained without the validation rows" in " ".join(err.split())
    assert "was saved to" not in err  # one sentence, not a second that reads as if the refit were saved
    rec = Recommender.load(tmp_path / "m")
    assert "refit" not in rec.info and rec.info["n_train"] < len(pd.read_csv(ratings_csv))
    best = rec.info["best_epoch"]
    assert calls[1].epochs == best and calls[1].burn_in == 6 * best // 12 and calls[1].valid_pct == 0  # in proportion


def test_human_output_has_table_and_recommendations(capsys, tmp_path, ratings_csv):
    code, out, _ = run(capsys, "train", "--data", str(ratings_csv), "--epochs", "2", "--out", str(tmp_path / "m"),
                       "--device", "cpu")
    assert code == 0
    assert "valid_rmse" in out and "Top 5 for user" in out
    pd.read_csv(ratings_csv).rename(columns={"user": "userId", "rating": "Book-Rating"}).to_csv(
        tmp_path / "named.csv", index=False)
    code, out, _ = run(capsys, "train", "--data", str(tmp_path / "named.csv"), "--epochs", "2", "--ranker", "none",
                       "--out", str(tmp_path / "m2"), "--device", "cpu")
    first = out.splitlines()[0]  # what is trained on what, before any epoch: a wrong column shows here
    assert first.startswith("Training model dot, solver bayes (10 factors, 2 epochs) on ") and "users x" in first
    assert "(ratings 0.1" in first and "; validating on " in first, first
    assert "columns: user 'userId', rating 'Book-Rating'" in first, first


@pytest.mark.parametrize("content,needle", [
    ("", "is empty"),
    ("user,item,rating\n", "has a header but no rows"),
    ("user,item,stars_x\n1,2,3\n", "no rating column"),
    ("user,item,rating\n1,2,3\n1,3,abc\n", "row 3, column 'rating'"),
    ("user;item;rating\n1;2;3\n1;3;3,5\n", "'3,5' is not a number (a decimal comma? write 3.5)"),
    ("user,item,rating\n,,\n,,\n", "has a header but no rows"),  # a spreadsheet's empty rows are no rows
    ("user,item,rating\n1,2,3\n1,3,nan\n", "row 3"),
    ("user,item,rating\n1,2,3\n,3,4\n", "user id is empty"),
    ("user,item,rating\n1,2,3\n1,2,4\n", "--duplicates"),
])
def test_bad_files_exit_2_with_one_sentence(capsys, tmp_path, content, needle):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code, out, err = run(capsys, "train", "--data", str(path), "--out", str(tmp_path / "m"))
    assert code == 2
    assert needle in err and str(path) in err
    assert "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_missing_model_dir_is_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", str(tmp_path / "nope"), "--data", "x.csv")
    assert code == 2 and "does not exist" in err


@pytest.mark.parametrize("content", ["user,item\nu1,i1\nu1,i1\nnobody,i2\n", "u1\ti1\nu1\ti1\nnobody\ti2\n"])
def test_predict_pairs_need_no_rating_column(capsys, tmp_path, ratings_csv, content):
    assert run(capsys, "train", "--data", str(ratings_csv), "--epochs", "2", "--out", str(tmp_path / "m"),
               "--device", "cpu", "--json")[0] == 0
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(content)
    code, out, err = run(capsys, "predict", str(tmp_path / "m"), "--data", str(pairs), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["user"], r["item"], r["known_user"]) for r in rows] == [("u1", "i1", True), ("u1", "i1", True),
                                                                       ("nobody", "i2", False)]
    assert rows[0]["prediction"] == rows[1]["prediction"]


def test_predict_by_position_and_a_hint_when_nothing_is_known(capsys, tmp_path, ratings_csv):
    assert run(capsys, "train", "--data", str(ratings_csv), "--epochs", "2", "--out", str(tmp_path / "m"),
               "--device", "cpu", "--ranker", "none", "--json")[0] == 0
    df = pd.read_csv(ratings_csv).head(5)
    pairs = tmp_path / "pairs.csv"
    df[["item", "user"]].to_csv(pairs, header=False, index=False)  # headerless, item first
    code, out, err = run(capsys, "predict", str(tmp_path / "m"), "--data", str(pairs), "--json")
    assert code == 0 and not any(r["known"] for r in json.loads(out))
    assert "None of the users or items" in err and "--user-col" in err
    code, out, err = run(capsys, "predict", str(tmp_path / "m"), "--data", str(pairs), "--user-col", "2",
                         "--item-col", "1", "--json")
    assert code == 0 and all(r["known"] for r in json.loads(out)) and err == ""
    numbered = pd.read_csv(ratings_csv).replace({"user": r"^u", "item": r"^i"}, "", regex=True)
    numbered.to_csv(tmp_path / "numbered.csv", index=False)
    assert run(capsys, "train", "--data", str(tmp_path / "numbered.csv"), "--epochs", "1", "--out",
               str(tmp_path / "n"), "--device", "cpu", "--ranker", "none", "--json")[0] == 0
    written = numbered.head(5).astype({"user": float, "item": float})  # "7.0": as a float column writes them
    written[["user", "item"]].to_csv(pairs, index=False)
    code, out, err = run(capsys, "predict", str(tmp_path / "n"), "--data", str(pairs), "--json")
    first = numbered.user[0]
    assert code == 0 and f"ids are matched as text, and the model's '{first}' is written '{first}.0' there" in err


def test_split_trains_on_all_of_its_base_file_as_published_results_do(ml100k_dir, tmp_path, capsys):
    argv = ["train", "--split", "u1", "--epochs", "2", "--device", "cpu", "--ranker", "none", "--json"]
    assert main([*argv, "--out", str(tmp_path / "all")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["valid_pct"] == 0 and "valid" not in result and result["test"]["n"] == 20000
    assert main([*argv, "--valid-pct", "0.1", "--out", str(tmp_path / "carved")]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["valid_pct"] == 0.1


def test_predict_writes_parquet_by_suffix_and_takes_one_way_of_asking(capsys, tmp_path, ratings_csv):
    out_dir = tmp_path / "m"
    assert main(["train", "--data", str(ratings_csv), "--out", str(out_dir), "--epochs", "2", "--device", "cpu"]) == 0
    capsys.readouterr()
    preds = tmp_path / "p.parquet"
    assert main(["predict", str(out_dir), "--data", str(ratings_csv), "--out", str(preds)]) == 0
    assert list(pd.read_parquet(preds).columns)[:2] == ["user", "item"]
    (tmp_path / "pairs.csv").write_text("user,item\n7,12\n007,12\n")
    assert main(["predict", str(out_dir), "--data", str(tmp_path / "pairs.csv"), "--out", str(preds)]) == 0
    written = pd.read_parquet(preds)  # whole-number ids as integers (as recommend --all-users writes them)
    assert written.user.tolist() == ["7", "007"] and written.item.dtype == np.int64 and written.item.tolist() == [12, 12]
    assert main(["predict", str(out_dir), "--data", str(ratings_csv), "--user", "u1", "--item", "i1"]) == 2
    assert "Give --user and --item, or --data FILE" in capsys.readouterr().err
    assert main(["predict", str(out_dir), "--data", str(ratings_csv), "--out", str(tmp_path / "p.tsv")]) == 0
    assert (tmp_path / "p.tsv").read_text().startswith("user\titem\t")
    assert main(["predict", str(tmp_path / "no-model-yet"), "--data", str(ratings_csv), "--out", "p.txt"]) == 2
    assert "out (--out) must end in .csv, .tsv, .parquet or .pq" in capsys.readouterr().err  # said before loading a model
    assert main(["predict", str(out_dir), "--data", str(ratings_csv), "--out", str(preds), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)  # the rows went to the file, not to the screen as well
    assert summary == {"out": str(preds), "n_rows": len(pd.read_parquet(preds)), "n_fallback": 0}
    for unread in ("--rating-col", "--duplicates"):  # predict reads no rating and keeps repeated pairs
        with pytest.raises(SystemExit):
            main(["predict", str(out_dir), "--data", str(ratings_csv), unread, "x"])
        assert f"unrecognized arguments: {unread}" in capsys.readouterr().err


def test_a_table_title_wraps_at_the_consoles_width_and_an_empty_title_column_is_left_out(capsys):
    from latentrec.cli.common import table

    long = "Top 3 for user [u1], ordered by popularity, with a title longer than the table is wide"
    table(long, ["rank", "item", "title"], [(1, "i1", ""), (2, "i2", "")])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == long  # one line, brackets kept (no markup)
    assert out.splitlines()[1].split() == ["rank", "┃", "item"]
    table(None, ["rank", "item", "title"], [(1, "i1", "Heat (1995)"), (2, "i2", "")])
    assert "Heat (1995)" in capsys.readouterr().out


def test_a_table_shows_brackets_in_its_cells_as_they_are(capsys):
    from latentrec.cli.common import table

    table("Top 1", ["rank", "item", "title"], [(1, "[i1]", "Movie [/x] [bold]b[/bold]")])  # rich markup would raise
    assert "│ [i1] │ Movie [/x] [bold]b[/bold]" in capsys.readouterr().out


def test_a_path_with_brackets_is_printed_as_it_is(tmp_path, capsys):
    from conftest import lowrank_ratings

    df, _ = lowrank_ratings(n_users=30, n_items=20, density=0.5)
    df.to_csv(tmp_path / "r.csv", index=False)
    out = tmp_path / "m [/y]"
    assert main(["train", "--data", str(tmp_path / "r.csv"), "--out", str(out), "--epochs", "2", "--device", "cpu"]) == 0
    assert "m [/y]/" in capsys.readouterr().out  # was rich's MarkupError, after the model was saved


@pytest.mark.parametrize("gain, said", [(-0.7, True), (6.7, False)])
def test_a_model_worse_than_the_biases_baseline_is_pointed_out(capsys, gain, said):
    from latentrec.cli.evaluate import print_evaluation

    baselines = {"global_mean": {"rmse": 1.0, "mae": 0.8}, "biases": {"rmse": 0.93, "mae": 0.75}}
    print_evaluation({"data": "valid", "n": 10, "n_unknown": 0, "n_seen": 0, "n_off_scale": 0, "ratings_std": 1.0,
                      "rmse": 0.94, "mae": 0.76, "baselines": baselines,
                      "improvement_pct": {"global_mean": 6.0, "biases": gain}})
    assert ("worse than the user + item biases baseline" in " ".join(capsys.readouterr().out.split())) == said


def test_evaluate_and_predict_find_the_columns_the_model_was_trained_from(capsys, tmp_path, ratings_csv):
    """Trained with --rating-col stars, a model scores another file with a stars column without the flag again."""
    df = pd.read_csv(ratings_csv).rename(columns={"user": "who", "rating": "stars"})
    df.iloc[:800].to_csv(tmp_path / "train.csv", index=False)
    df.iloc[800:].to_csv(tmp_path / "test.csv", index=False)
    code, _, _ = run(capsys, "train", "--data", str(tmp_path / "train.csv"), "--user-col", "who", "--rating-col", "stars",
                     "--epochs", "2", "--ranker", "none", "--out", str(tmp_path / "m"), "--device", "cpu")
    assert code == 0
    code, out, err = run(capsys, "evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "test.csv"), "--json")
    assert code == 0 and json.loads(out)["n"] == len(df) - 800, err
    assert main(["predict", str(tmp_path / "m"), "--data", str(tmp_path / "test.csv"), "--out",
                 str(tmp_path / "p.csv")]) == 0
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "m"), "--out", str(tmp_path / "again"), "--json"]) == 0  # reruns
    capsys.readouterr()
    plain = df.iloc[800:].rename(columns={"who": "user", "stars": "rating"})
    plain.assign(stars=1.0).to_csv(tmp_path / "plain.csv", index=False)  # another "stars": the file's rating wins
    code, out, _ = run(capsys, "evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "plain.csv"), "--json")
    assert code == 0 and json.loads(out)["rmse"] < 1.0  # a file's own columns are read as before
    plain.rename(columns={"rating": "grade"}).to_csv(tmp_path / "none.csv", index=False)
    code, _, err = run(capsys, "evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "none.csv"))
    assert code == 2 and "has no rating column" in err  # the first sentence, not one about 'stars'
    plain.rename(columns={"rating": "stars"}).to_csv(tmp_path / "half.csv", index=False)  # "user" by name, "stars"
    code, out, err = run(capsys, "evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "half.csv"), "--json")
    assert code == 0, err  # a role at a time: the file's own user column, the remembered rating column
    code, _, err = run(capsys, "evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "test.csv"), "--rating-col",
                       "nope")
    assert code == 2 and "has no column 'nope'" in err  # a flag's own sentence
    code, out, err = run(capsys, "train", "--config", str(tmp_path / "m"), "--data", str(tmp_path / "plain.csv"),
                         "--out", str(tmp_path / "m3"), "--json")
    assert code == 0, err  # another file's own columns: the model's are no flags
