"""Dataset downloads against a loopback HTTP server: cut short, wrong bytes, hostile archives.

The server runs in a thread on 127.0.0.1; ``LATENTREC_MIRROR`` points the named datasets at it.
Every failure must exit 2 with one sentence that says what to do, and leave the data folder
exactly as it was.
"""

from __future__ import annotations

import io
import socketserver
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from latentrec.cli import main
from latentrec.data.datasets import dataset_path
from latentrec.errors import DownloadError

RATINGS_CSV = "userId,movieId,rating,timestamp\n" + "".join(
    f"{u},{i},{(u * 7 + i * 3) % 9 / 2 + 0.5},{1000 + u}\n" for u in range(1, 13) for i in range(1, 11) if (u + i) % 3
)


def make_zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


GOOD_SMALL = make_zip({"ml-latest-small/ratings.csv": RATINGS_CSV,
                       "ml-latest-small/movies.csv": "movieId,title\n1,Toy Story (1995)\n"})
WRONG_100K = make_zip({"ml-100k/u.data": "1\t2\t3\t881250949\n"})  # not GroupLens' archive
ESCAPING = make_zip({"ml-latest-small/ratings.csv": RATINGS_CSV, "../../escaped.txt": "gotcha"})


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        route, _, name = self.path.strip("/").partition("/")
        if route == "good":
            self.send(GOOD_SMALL)
        elif route == "half":
            self.send(GOOD_SMALL, cut=len(GOOD_SMALL) // 2)
        elif route == "wrong":
            self.send(WRONG_100K)
        elif route == "escape":
            self.send(ESCAPING)
        elif route == "garbage":
            self.wfile.write(b"this is not HTTP\r\n\r\n")
        else:
            self.send_error(404)

    def send(self, body: bytes, cut: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:cut])
        self.wfile.flush()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    socketserver.TCPServer.allow_reuse_address = True
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def mirror(monkeypatch, server):
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")

    def use(route: str) -> str:
        monkeypatch.setenv("LATENTREC_MIRROR", f"{server}/{route}/")
        return f"{server}/{route}"
    return use


def download_fails(capsys, data_dir: Path, dataset: str, *needles: str) -> str:
    data_dir.mkdir(exist_ok=True)
    code = main(["train", "--data", dataset, "--data-dir", str(data_dir), "--out", str(data_dir.parent / "m"),
                 "--epochs", "1"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("latentrec train: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    for needle in needles:
        assert needle in err, err
    assert list(data_dir.iterdir()) == [], "partial download left behind"
    assert not (data_dir.parent / "m").exists()
    return err


def test_download_cut_short_is_removed_and_says_what_to_do(capsys, tmp_path, mirror):
    url = mirror("half")
    download_fails(capsys, tmp_path / "data", "ml-latest-small", f"{url}/ml-latest-small.zip",
                   f"stopped after {len(GOOD_SMALL) // 2} of {len(GOOD_SMALL)} bytes", "partial file was deleted",
                   "by hand")


def test_wrong_checksum_is_refused(capsys, tmp_path, mirror):
    mirror("wrong")
    download_fails(capsys, tmp_path / "data", "ml-100k", "does not match GroupLens' published checksum",
                   "it was deleted", "by hand")


def test_member_escaping_the_folder_is_refused(capsys, tmp_path, mirror):
    mirror("escape")
    download_fails(capsys, tmp_path / "data", "ml-latest-small", "'../../escaped.txt'",
                   "outside the data folder")
    assert not list(tmp_path.parent.rglob("escaped.txt"))


@pytest.mark.parametrize("route,needle", [("missing", "(Not Found)"), ("garbage", "Could not download")])
def test_server_errors_are_one_sentence(capsys, tmp_path, mirror, route, needle):
    mirror(route)
    download_fails(capsys, tmp_path / "data", "ml-latest-small", needle, "by hand")


def test_good_download_is_extracted_once_and_trains(capsys, tmp_path, mirror):
    mirror("good")
    data_dir = tmp_path / "data"
    code = main(["train", "--data", "ml-latest-small", "--data-dir", str(data_dir), "--out", str(tmp_path / "m"),
                 "--epochs", "1", "--n-factors", "2", "--device", "cpu", "--json"])
    capsys.readouterr()
    assert code == 0
    assert sorted(p.name for p in data_dir.iterdir()) == ["ml-latest-small"]
    assert (data_dir / "ml-latest-small" / "ratings.csv").read_text() == RATINGS_CSV
    mirror("missing")  # already there: never fetched again
    assert dataset_path("ml-latest-small", data_dir) == data_dir / "ml-latest-small"


def test_a_download_into_a_folder_of_the_users_keeps_their_files(tmp_path, server):
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert dataset_path("ml-latest-small", tmp_path, url=f"{server}/good/x.zip") == folder
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "ratings.csv").read_text() == RATINGS_CSV
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-latest-small"]


def test_dataset_path_takes_an_explicit_url(tmp_path, server):
    with pytest.raises(DownloadError, match="stopped after"):
        dataset_path("ml-latest-small", tmp_path, url=f"{server}/half/x.zip")
    assert list(tmp_path.iterdir()) == []
    assert dataset_path("ml-latest-small", tmp_path, url=f"{server}/good/x.zip").is_dir()


def test_a_mirror_that_is_not_a_web_address(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTREC_MIRROR", "notaurl")
    download_fails(capsys, tmp_path / "data", "ml-100k", "notaurl/ml-100k.zip is not a web address",
                   "$LATENTREC_MIRROR")
    assert not any((tmp_path / "data").iterdir())
