"""The three MovieLens layouts parse, from small fixtures written in their formats."""

import shutil

import pandas as pd
import pytest

from latentrec.data.lean import read_split
from latentrec.data.ratings import load_ratings
from latentrec.errors import DataError


def test_ml1m_layout(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_bytes(b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    (folder / "movies.dat").write_bytes("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                                        "661::Caf\u00e9 (1996)::Comedy\n".encode("latin-1"))
    r = load_ratings("ml-1m", data_dir=tmp_path)
    assert len(r) == 3 and r.df.rating.tolist() == [5.0, 3.0, 4.0]
    assert r.df.user.tolist() == ["1", "1", "2"] and "timestamp" in r.df
    assert r.title("661") == "Caf\u00e9 (1996)"


def test_ml_latest_layout_crlf_half_stars(tmp_path):
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n1,3,3.5,964981247\r\n")
    (folder / "movies.csv").write_bytes(b'movieId,title,genres\r\n1,Toy Story (1995),Animation\r\n3,"Grumpier Old Men, (1995)",Comedy\r\n')
    r = load_ratings("ml-latest-small", data_dir=tmp_path)
    assert r.df.rating.tolist() == [4.0, 3.5]
    assert r.title("3") == "Grumpier Old Men, (1995)"


def test_ml100k_layout_from_readonly_copy(ml100k_dir, tmp_path):
    r = load_ratings("ml-100k")
    assert len(r) == 100_000 and r.df.user.nunique() == 943 and r.df.item.nunique() == 1682
    assert r.title("50") == "Star Wars (1977)"
    assert r.title("1682").startswith("Scream of Stone")


def test_parquet_and_named_columns(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"customer": [1, 2, 2], "product": ["a", "b", "a"], "stars": [1.0, 2.0, 5.0]})
    df.to_parquet(tmp_path / "r.parquet")
    r = load_ratings(tmp_path / "r.parquet", user_col="customer", item_col="product", rating_col="stars")
    assert r.df.user.tolist() == ["1", "2", "2"] and r.df.rating.tolist() == [1.0, 2.0, 5.0]


def test_headerless_tab_file(ml100k_dir, tmp_path):
    shutil.copy(ml100k_dir / "u1.test", tmp_path / "u1.test")
    r = load_ratings(tmp_path / "u1.test")
    assert len(r) == 20_000 and r.df.columns.tolist()[:3] == ["user", "item", "rating"]


@pytest.mark.parametrize("lean", [False, True])
def test_columns_named_by_position(tmp_path, lean):
    """--rating-col 4 is a file's fourth column: a headerless file in another order (the roles not placed take the
    columns left, in the order user, item, rating, timestamp), or a header's column by its place."""
    rows = [(880_000_000 + k, k % 7, k % 11, 1 + k % 5) for k in range(60)]  # timestamp, item, user, rating
    (tmp_path / "r.csv").write_text("".join(f"{t},{i},{u},{r}\n" for t, i, u, r in rows))
    (tmp_path / "h.csv").write_text("when,what,who,stars\n" + "".join(f"{t},{i},{u},{r}\n" for t, i, u, r in rows))
    expected = ([str(u) for _, _, u, _ in rows], [str(i) for _, i, _, _ in rows], [float(r) for *_, r in rows])
    for name in ("r.csv", "h.csv"):
        cols = {"user": "3", "item": "2", "rating": "4"}
        if lean:
            split = read_split(tmp_path / name, cols, min_bytes=0)
            t = split.train
            got = (split.users.decode(t.users), split.items.decode(t.items), t.ratings.tolist())
            assert sorted(zip(*got)) == sorted(zip(*expected)), name
        else:
            r = load_ratings(tmp_path / name, user_col="3", item_col="2", rating_col="4")
            assert (r.df.user.tolist(), r.df.item.tolist(), r.df.rating.tolist()) == expected, name
    if not lean:  # the one column left over is the timestamp
        r = load_ratings(tmp_path / "r.csv", user_col="3", item_col="2", rating_col="4")
        assert r.df.timestamp.tolist() == [t for t, *_ in rows]


def test_positions_place_the_rating_where_the_header_question_looks_and_are_plain_digits(tmp_path):
    """``5,u0,m0`` lines with --user-col 2 --item-col 3: the rating is left in column 1, where the first line is
    checked for a header (the third field, "m0", made it one); "²" passed isdigit() and crashed int()."""
    from latentrec.errors import DataError

    (tmp_path / "r.csv").write_text("".join(f"{1 + k % 5},u{k % 7},m{k % 11}\n" for k in range(60)))
    r = load_ratings(tmp_path / "r.csv", user_col="2", item_col="3")
    assert len(r) == 60 and r.df.rating.tolist()[:3] == [1.0, 2.0, 3.0] and r.df.user[0] == "u0"
    for bad in ("²", "0", "7"):
        with pytest.raises(DataError, match=f"--rating-col {bad} names no column; give its position, 1 to 3"):
            load_ratings(tmp_path / "r.csv", user_col="2", item_col="3", rating_col=bad)


def test_file_inside_a_named_dataset(ml100k_dir):
    r = load_ratings("ml-100k/u1.test")
    assert len(r) == 20_000 and r.title("50") == "Star Wars (1977)"


def test_titles_follow_their_items_through_deduplication():
    import pandas as pd

    df = pd.DataFrame({"user": ["1", "1", "2", "3"], "item": ["x", "x", "y", "z"], "rating": [1.0, 2.0, 3.0, 4.0],
                       "title": ["X", "X", "Y", "Z"]})
    for policy in ("mean", "last"):
        r = load_ratings(df, duplicates=policy)
        assert r.titles == {"x": "X", "y": "Y", "z": "Z"} and "title" not in r.df


def test_a_gzipped_text_file_reads_as_the_plain_one(tmp_path):
    import gzip

    import pytest

    from latentrec.errors import DataError

    body = "userId,movieId,rating\n1,10,4\n2,10,3.5\n2,\u00e9t\u00e9,5\n".encode("latin-1")
    (tmp_path / "r.csv").write_bytes(body)
    (tmp_path / "r.csv.gz").write_bytes(gzip.compress(body))
    (tmp_path / "u.data.gz").write_bytes(gzip.compress(b"1\t10\t4\t0\n2\t10\t3\t0\n"))
    plain, packed = load_ratings(tmp_path / "r.csv"), load_ratings(tmp_path / "r.csv.gz")
    assert packed.df.equals(plain.df) and packed.df.item.tolist()[-1] == "\u00e9t\u00e9"
    assert load_ratings(tmp_path / "u.data.gz").df.rating.tolist() == [4.0, 3.0]
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="bad.csv.gz could not be read"):
        load_ratings(tmp_path / "bad.csv.gz")


def test_columns_found_by_name_in_other_datasets_layouts(tmp_path):
    """Book-Crossing's header, Amazon's review table, and a file with two rating-like columns."""
    import pytest

    from latentrec.errors import DataError

    (tmp_path / "bx.csv").write_text('"User-ID";"ISBN";"Book-Rating"\n"276725";"034545104X";"8"\n"276726";"0155061224";"5"\n')
    r = load_ratings(tmp_path / "bx.csv")
    assert r.df.item.tolist() == ["034545104X", "0155061224"] and r.df.rating.tolist() == [8.0, 5.0]
    (tmp_path / "bx.csv").write_text('"User-ID";"ISBN";"Book-Rating";"Book-Title"\n"1";"034545104X";"8";"Éclat"\n'
                                     '"2";"0155061224";"5";"Dune"\n')
    assert load_ratings(tmp_path / "bx.csv").titles == {"034545104X": "Éclat", "0155061224": "Dune"}  # titled
    (tmp_path / "amazon2023.csv").write_text("user_id,parent_asin,rating,timestamp\nA1,B01,5,1588687728923\n"
                                             "A2,B02,3,1588615855070\n")
    assert load_ratings(tmp_path / "amazon2023.csv").df.item.tolist() == ["B01", "B02"]
    (tmp_path / "amazon.tsv").write_text("customer_id\treview_id\tproduct_id\tproduct_parent\tstar_rating\thelpful_votes\n"
                                         "7\tR1\tB01\t33\t5\t2\n8\tR2\tB02\t34\t3\t0\n")
    assert load_ratings(tmp_path / "amazon.tsv").df.rating.tolist() == [5.0, 3.0]
    (tmp_path / "two.csv").write_text("user,item,score,rating\n1,2,51.3,4\n2,1,47.0,3\n")
    assert load_ratings(tmp_path / "two.csv").df.rating.tolist() == [4.0, 3.0]  # the role's own name wins
    (tmp_path / "ambiguous.csv").write_text("user,item,score,stars\n1,2,51.3,4\n2,1,47.0,3\n")
    with pytest.raises(DataError, match=r"2 columns that could be the rating \(score, stars\); name one with --rating-col"):
        load_ratings(tmp_path / "ambiguous.csv")
    assert load_ratings(tmp_path / "ambiguous.csv", rating_col="stars").df.rating.tolist() == [4.0, 3.0]
    (tmp_path / "suffixed.csv").write_text("user,item,score,user_rating\n1,2,51.3,4\n2,1,47.0,3\n")
    with pytest.raises(DataError, match=r"could be the rating \(score, user_rating\)"):  # score was taken silently
        load_ratings(tmp_path / "suffixed.csv")
    (tmp_path / "average.csv").write_text("user,item,rating,avg_rating\n1,2,4,3.9\n2,1,3,4.1\n")
    assert load_ratings(tmp_path / "average.csv").df.rating.tolist() == [4.0, 3.0]  # the role's own name wins
    (tmp_path / "goodbooks.csv").write_text("user_id,book_id,rating,isbn\n1,10,4,0439023483\n2,11,3,0439554934\n")
    assert load_ratings(tmp_path / "goodbooks.csv").df.item.tolist() == ["10", "11"]  # an id column wins
    (tmp_path / "netflix.csv").write_text("Cust_Id,Movie_Id,Rating\n1488844,1,3\n822109,1,5\n")
    assert load_ratings(tmp_path / "netflix.csv").df.user.tolist() == ["1488844", "822109"]


def test_a_spreadsheets_trailing_empty_rows_are_left_out(tmp_path):
    (tmp_path / "r.csv").write_text("user,item,rating\n1,2,3\n2,1,4\n,,\n , ,\n")
    assert len(load_ratings(tmp_path / "r.csv")) == 2
    from latentrec.data.lean import read_split

    (tmp_path / "big.csv").write_text("user,item,rating\n1,2,3\n2,1,4\n,,\n")
    assert read_split(tmp_path / "big.csv", min_bytes=0) is None  # a big file too: the in-memory route leaves them out


@pytest.mark.parametrize("body, sep", [
    ("1;10;4,5\n2;10;3\n2;11;5\n", ";"),  # a decimal comma in the first rating
    ("Müller, Jo|10|4\nAnn|10|3\nAnn|11|5\n", "|"),  # a comma in the first id
    ("a::b\t10\t4\nAnn\t10\t3\nAnn\t11\t5\n", "\t"),  # '::' in the first id
    ("1,10,4,Love; Actually; Again\n2,10,3,x\n2,11,5,y\n", ","),  # semicolons in a title: the commas still split
    ("Müller, Jo, Jr.|10|4\nAnn|10|3\nAnn|11|5\n", "|"),  # two commas in the first id: the next lines have none
    ('"Müller, Jo, Jr."|10|4\nAnn|10|3\nAnn|11|5\n', "|"),  # quoted, they never counted
    ("1;21;4,0;2,64\n1;25;4,0;4,94\n2;21;3,5;2,64\n", ";"),  # decimal commas in two columns: 2 commas a line
    ("1|21|4|Good, Bad, Ugly\n2|21|3|Up, Down, Out\n2|22|5|A, B, C\n", "|"),  # titles of two commas each
    ("1,10,4,A; B; C; D\n2,10,3,E; F; G; H\n2,11,5,I; J; K; L\n", ","),  # more ';' than ',': no rating third
])
def test_the_separator_is_the_one_that_splits_the_first_line_into_columns(tmp_path, body, sep):
    """The first separator found was taken: ``1;10;4,5`` was split at its comma into two columns, and
    ``Müller, Jo, Jr.|10|4`` into three at its commas."""
    from latentrec.data.text_files import sniff_header

    path = tmp_path / "r.txt"
    path.write_text(body)
    first, *following = body.splitlines()
    assert sniff_header(first, {}, following=following)[0] == sep
    if "4,0" in body:
        with pytest.raises(DataError, match=r"'4,0' is not a number \(a decimal comma"):
            load_ratings(path)
    elif "4,5" in body:  # now the cell is read whole, and said to be one
        with pytest.raises(DataError, match=r"row 1, column 'rating': '4,5' is not a number \(a decimal comma"):
            load_ratings(path)
    else:
        assert list(load_ratings(path).df.rating) == [4.0, 3.0, 5.0]


def test_windows_1252_text_keeps_its_quotes_and_euro(tmp_path):
    """Excel's "ANSI" CSV: read as latin-1, José’s (0x92) became 'José\\x92s', an id no one could type; a byte
    Windows-1252 leaves undefined (0x81) still reads, as latin-1."""
    body = "user;item;rating\nJosé’s;€ box;4\nAnn;€ box;3\nAnn;“Quote”;5\n"
    (tmp_path / "ansi.csv").write_bytes(body.encode("cp1252"))
    df = load_ratings(tmp_path / "ansi.csv").df
    assert df.user.tolist() == ["José’s", "Ann", "Ann"] and df.item.tolist() == ["€ box", "€ box", "“Quote”"]
    (tmp_path / "odd.csv").write_bytes(body.encode("cp1252").replace(b"\x80 box", b"\x81 box"))
    assert load_ratings(tmp_path / "odd.csv").df.item.tolist()[0] == "\x81 box"


def test_messy_exports_are_read_or_refused_in_their_own_words(tmp_path):
    """From a data engineer's exports: each was read wrongly or refused with a sentence about something else."""

    def refused(name: str, body: bytes | str, match: str) -> None:
        path = tmp_path / name
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        with pytest.raises(DataError, match=match):
            load_ratings(path)

    # a headerless first row whose rating is missing was taken for a header ("has no user column")
    refused("na.csv", "1,99,NA\n1,98,4\n2,99,3\n", r"row 1, column 'rating': the rating is missing")
    refused("blank.csv", "1,99,\n1,98,4\n2,99,3\n", r"row 1, column 'rating': the rating is missing")
    refused("sep.csv", "sep=;\nuser;item;rating\n1;2;3\n", r"starts with Excel's 'sep=;' line; delete that line")
    refused("tab.csv", "sep=\t\nuser\titem\trating\n1\t2\t3\n", r"starts with Excel's 'sep=\\t' line")
    refused("r.zip", b"PK\x03\x04", r"r.zip is a zip archive; unzip it")
    refused("trail.csv", "user,item,rating\n1,21,4,\n2,21,3,\n", r"saw 4; quote fields that contain ',', and end no line")
    # a header's " Rating " is the rating column asked for as "rating"; a groupby's user index saved with the frame
    (tmp_path / "spaced.csv").write_text("User ID,Item ID, Rating \n1,21,4\n2,21,3\n")
    got = load_ratings(tmp_path / "spaced.csv", user_col="user id", rating_col="Rating")
    assert got.df.rating.tolist() == [4.0, 3.0] and got.df.user.tolist() == ["1", "2"]
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "x"], "rating": [4.0, 3.0]}).set_index("user")
    frame.to_parquet(tmp_path / "indexed.parquet")
    assert load_ratings(tmp_path / "indexed.parquet").df.user.tolist() == ["a", "b"]


def test_ids_a_float_column_wrote_are_warned_of(tmp_path, caplog):
    """``df.to_csv`` of float ids writes 1.0: kept as text, the model knew '1.0' and not the user 1 asked for,
    and beside a 1 it made two users of one, without a word."""
    (tmp_path / "all.csv").write_text("user,item,rating\n1.0,10,4\n2.0,10,3\n2.0,11,5\n")
    (tmp_path / "mixed.csv").write_text("user,item,rating\n1.00,10,4\n1,11,3\n2,11,5\n")
    (tmp_path / "fine.csv").write_text("user,item,rating\nv1.5,10,4\n2,10,3\n2,11,5\n")
    with caplog.at_level("WARNING", logger="latentrec"):
        assert load_ratings(tmp_path / "all.csv").df.user.tolist() == ["1.0", "2.0", "2.0"]
        assert load_ratings(tmp_path / "mixed.csv").df.user.nunique() == 3
        load_ratings(tmp_path / "fine.csv")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert "every user id is a whole number written with '.0' (1.0, ...)" in said[0] and "not '1'" in said[0]
    assert "user ids '1' and '1.00' are both there, read as two users" in said[1]


def test_an_id_an_export_writes_for_a_missing_value_is_warned_of(tmp_path, caplog):
    """R's write.csv writes a missing user as NA: every such row became one user "NA", without a word."""
    (tmp_path / "r.csv").write_text("user,item,rating\n1,10,4\nNA,10,3\nNA,11,5\n2,#N/A,2\n")
    with caplog.at_level("WARNING", logger="latentrec"):
        df = load_ratings(tmp_path / "r.csv").df
    assert df.user.tolist() == ["1", "NA", "NA", "2"]  # kept: an id may be NA (a product code, Namibia)
    said = [r.getMessage() for r in caplog.records]
    assert "2 rows have the user id 'NA', read as one user; if it marks a missing id" in said[0]
    assert "1 row has the item id '#N/A'" in said[1]
