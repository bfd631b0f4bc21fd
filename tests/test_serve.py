"""latentrec serve through FastAPI's test client: every endpoint, every error, reloads, concurrent threads."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_model import saved, served

from latentrec.data.vocab import Vocab
from latentrec.errors import UnknownItemsLeftOut
from latentrec.use.coldstart import UserRatings
from latentrec.use.interpret import item_pca
from latentrec.use.recommender import Recommender
from latentrec.use.serve.app import MAX_BODY, app_from_env, create_app
from latentrec.use.serve.holder import Loaded, ModelHolder
from latentrec.use.similar import similar_items
from latentrec.use.topn import popular, recommend

LOCAL = ("127.0.0.1", 50000)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return saved(tmp_path_factory, "serve")


@pytest.fixture(scope="module")
def holder(model_dir) -> ModelHolder:
    h = ModelHolder(model_dir)
    h.load()
    return h


@pytest.fixture(scope="module")
def client(holder) -> TestClient:
    return TestClient(create_app(holder))


def snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()}


def test_health_ready_docs_and_page(client, holder):
    assert client.get("/healthz").json() == {"status": "ok", "pid": os.getpid()}
    ready = client.get("/readyz").json()
    rec = holder.state.rec
    assert ready["ready"] and ready["pid"] == os.getpid() and ready["model"]["n_users"] == len(rec.users) - 1
    assert ready["model"]["kind"] == "dot"
    assert ready["model"]["answers"] == rec.parts
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/users/{user}/recommendations", "/api/recommendations", "/api/items", "/api/items/{item}/similar",
            "/api/predict", "/api/map"} <= set(paths)
    docs = client.get("/docs").text  # the viewer ships with the server: /docs works with no internet
    assets = re.findall(r"""(?:href|src)=['"]?([^'" >]+)""", docs)
    assert len(assets) >= 3 and all(a.startswith("/static-offline-docs/") for a in assets), assets
    assert all(client.get(a).status_code == 200 for a in assets) and "cdn" not in docs
    page = client.get("/")
    assert page.status_code == 200 and '"static/app.js"' in page.text  # relative: under a proxy's /prefix/ too
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_page_fetches_nothing_from_elsewhere(client):
    """Nothing from another site, and nothing by an absolute path: a proxy serving the page under /recs/ serves
    what it asks for under /recs/ too."""
    for name in ("/", "/static/app.js", "/static/style.css"):
        text = client.get(name).text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
        assert not re.search(r"""(href|src)="/|api\(["`]/|fetch\(["`]/""", text), name


def test_known_user_recommendations_skip_rated_items(client, holder):
    rec = holder.state.rec
    user = rec.users.classes[5]
    body = client.get(f"/api/users/{user}/recommendations", params={"n": 7}).json()
    assert body["known"] is True and len(body["recommendations"]) == 7
    items = [r["item"] for r in body["recommendations"]]
    direct = recommend(rec, user, 7)
    assert items == list(direct["item"])
    assert [r["prediction"] for r in body["recommendations"]] == pytest.approx(list(direct["prediction"]))
    rated = set(rec.items.decode(rec.rated_by(5)))
    assert rated and not rated & set(items)
    assert [r["prediction"] for r in body["recommendations"]] == pytest.approx(
        list(rec.predict(np.array([user] * 7), np.array(items))["prediction"]), abs=1e-5)


def test_unknown_user_gets_the_popular_list_flagged(client, holder):
    body = client.get("/api/users/nobody/recommendations?n=5").json()
    assert body["known"] is False
    idx, scores = popular(holder.state.rec, 5)
    assert [r["item"] for r in body["recommendations"]] == holder.state.rec.items.decode(idx)
    assert [r["prediction"] for r in body["recommendations"]] == pytest.approx(list(scores))
    assert holder.state.rec.users.index("nobody") == 0 and holder.state.rec.users.index("u1") > 0


def test_fold_in_recommendations(client, holder):
    rec = holder.state.rec
    given = [{"item": "i3", "rating": 5}, {"item": "i7", "rating": 4.5}, {"item": "i9", "rating": 1},
             {"item": "not-an-item", "rating": 3}]
    body = client.post("/api/recommendations", json={"ratings": given, "n": 6}).json()
    assert body["known"] and body["folded_in"] and body["ignored"] == ["not-an-item"]
    items = [r["item"] for r in body["recommendations"]]
    assert len(items) == 6 and not {"i3", "i7", "i9"} & set(items)
    with pytest.warns(UnknownItemsLeftOut):  # the library warns where the server answers "ignored"
        direct = recommend(rec, None, 6, ratings=UserRatings([g["item"] for g in given], [g["rating"] for g in given]))
    assert items == list(direct["item"])


def test_lists_leave_out_the_items_excluded(client, holder):
    """An app leaves out items it cannot show (out of stock, in the basket): the list is the best n of the rest."""
    rec = holder.state.rec
    for who in ("u1", "nobody"):  # a known user, and the popular list
        url = f"/api/users/{who}/recommendations"
        full = [r["item"] for r in client.get(url, params={"n": 8}).json()["recommendations"]]
        left = client.get(url, params={"n": 6, "exclude": [full[0], full[2], "not-an-item", "not-an-item"]}).json()
        assert [r["item"] for r in left["recommendations"]] == [full[1], *full[3:8]]
        assert left["ignored"] == ["not-an-item"]  # the app hears of an id it may have misspelt
        assert client.get(url, params={"n": 2, "exclude": ","}).json()["ignored"] == []  # an empty list
        many = client.get(url, params={"exclude": ",".join(map(str, range(1001)))})  # counted after the commas
        assert many.status_code == 422 and many.json()["detail"][0]["loc"] == ["query", "exclude"]
        commas = client.get(url, params={"n": 6, "exclude": f"{full[0]},{full[2]},not-an-item"}).json()  # as the CLI
        assert commas == left
        assert list(recommend(rec, who, 6, exclude=[full[0], full[2]])["item"]) == [full[1], *full[3:8]]
    given = {"ratings": [{"item": "i3", "rating": 5}, {"item": "i9", "rating": 1}], "n": 8}
    full = [r["item"] for r in client.post("/api/recommendations", json=given).json()["recommendations"]]
    left = client.post("/api/recommendations", json={**given, "n": 5, "exclude": [*full[:2], "gone"]}).json()
    assert [r["item"] for r in left["recommendations"]] == full[2:7] and left["ignored"] == ["gone"]


def test_many_users_lists_in_one_request(client, holder):
    """POST /api/users/recommendations: each list as GET answers it alone, in the order asked (a user twice, an
    unknown one, an integer id), with the same exclusions; its limits are 422s."""
    users = [*holder.state.rec.users.classes[1:6], "nobody", holder.state.rec.users.classes[1]]
    body = {"users": users, "n": 4, "exclude": ["i3", "gone"]}
    lists = client.post("/api/users/recommendations", json=body).json()["lists"]
    alone = [client.get(f"/api/users/{u}/recommendations", params={"n": 4, "exclude": ["i3", "gone"]}).json()
             for u in users]
    assert lists == alone and [x["known"] for x in lists] == [True] * 5 + [False, True]
    assert lists[0]["ignored"] == ["gone"] and all("i3" not in [r["item"] for r in x["recommendations"]] for x in lists)
    for bad in ({"users": []}, {"users": ["u1"] * 1001}, {"users": ["u1"], "n": 0}, {"user": ["u1"]},
                {"users": [None]}, {"users": ["u1"] * 101, "n": 1000}):  # the last: 101,000 items in one answer
        assert client.post("/api/users/recommendations", json=bad).status_code == 422, bad


def test_a_new_user_rating_only_unknown_items_gets_the_flagged_popular_list(client):
    body = client.post("/api/recommendations", json={"ratings": [{"item": "nope", "rating": 4}], "n": 5}).json()
    assert not body["known"] and not body["folded_in"] and body["ignored"] == ["nope"]
    unknown = client.get("/api/users/nobody/recommendations", params={"n": 5}).json()
    assert [r["item"] for r in body["recommendations"]] == [r["item"] for r in unknown["recommendations"]]


@pytest.mark.parametrize("body, status", [
    ({"ratings": [{"item": "i1", "rating": 4}, {"item": "i1", "rating": 2}]}, 422),  # rated twice
    ({"ratings": []}, 422),
    ({"ratings": [{"item": "i1"}]}, 422),
    ({"ratings": [{"item": "i1", "rating": "good"}]}, 422),
    ({"ratings": [{"item": "i1", "rating": 4}], "n": 0}, 422),
    ({"ratings": [{"item": 1.5, "rating": 4}]}, 422),
    ({"ratings": [{"item": True, "rating": 4}]}, 422),  # not the id "1"
    ({"ratings": [{"item": "i1", "rating": True}]}, 422),  # not the rating 1
    ({"ratings": [{"item": "i1", "rating": "5"}]}, 422),
])
def test_fold_in_refuses_bad_bodies(client, body, status):
    r = client.post("/api/recommendations", json=body)
    assert r.status_code == status and r.json()["detail"]


def test_non_finite_rating_is_refused(client):
    r = client.post("/api/recommendations", content=b'{"ratings": [{"item": "i1", "rating": NaN}]}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_title_search(client):
    exact = client.get("/api/items", params={"q": "movie 11"}).json()["items"]  # the exact title first
    assert exact[0]["item"] == "i11" and {i["item"] for i in exact[1:]} == {f"i11{d}" for d in range(10)}
    many = client.get("/api/items", params={"q": "Movie 1", "n": 50}).json()["items"]
    assert many[0]["item"] == "i1" and len(many) > 10 and all("Movie 1" in i["title"] for i in many)
    counts = [i["n_ratings"] for i in many[1:]]
    assert counts == sorted(counts, reverse=True)
    assert len(client.get("/api/items", params={"q": "Movie 1", "n": 3}).json()["items"]) == 3
    assert client.get("/api/items", params={"q": "zzz"}).json()["items"] == []
    by_id = client.get("/api/items", params={"q": "i11"}).json()["items"]  # an id: data without titles
    assert [i["item"] for i in by_id] == ["i11"] and by_id[0]["title"] == "Movie 11 (1999)"
    assert client.get("/api/items").status_code == 422


def test_similar_items(client, holder):
    body = client.get("/api/items/i4/similar?n=5").json()
    assert body["item"] == "i4" and body["title"] == holder.state.rec.titles["i4"]
    sims = [s["similarity"] for s in body["similar"]]
    assert len(sims) == 5 and sims == sorted(sims, reverse=True) and "i4" not in {s["item"] for s in body["similar"]}
    direct = similar_items(holder.state.rec, "i4", 5)
    assert [s["item"] for s in body["similar"]] == list(direct["item"])
    none = client.get("/api/items/i4/similar?n=5&min_ratings=1000")  # as `latentrec similar` says it
    assert none.status_code == 400 and "leaves no item" in none.json()["detail"]
    assert client.get("/api/items/%20i4/similar?n=5").json() == body  # an id is read as training read it
    spaced = client.get("/api/users/%20u1%20/recommendations?n=3").json()
    assert spaced == client.get("/api/users/u1/recommendations?n=3").json() and spaced["user"] == "u1"


@pytest.mark.parametrize("url, status", [
    ("/api/items/nope/similar", 404),
    ("/api/items/i4/similar?n=0", 422),
    ("/api/items/i4/similar?n=abc", 422),
    ("/api/items/i4/similar?min_ratings=-1", 422),
    ("/api/users/u1/recommendations?n=100000", 422),
    ("/api/map?n_items=2", 422),  # a map of 2 items has one direction
])
def test_bad_parameters(client, url, status):
    r = client.get(url)
    assert r.status_code == status and r.json()["detail"]


def test_predict_with_known_flags(client, holder):
    rec = holder.state.rec
    pairs = [["u1", "i2"], ["u1", "nope"], ["nobody", "i2"], ["u3", "i4"]]
    body = client.post("/api/predict", json={"pairs": pairs}).json()["predictions"]
    assert [(p["known_user"], p["known_item"], p["known"]) for p in body] == [
        (True, True, True), (True, False, False), (False, True, False), (True, True, True)]
    expected = rec.predict(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))["prediction"]
    assert [p["prediction"] for p in body] == pytest.approx(list(expected), abs=1e-6)
    assert body[0]["title"] == rec.titles["i2"]


@pytest.mark.parametrize("content", [b'{"pairs": [["u1", "i2"]', b'{"pairs": [["u1"]]}', b'{"pairs": []}',
                                     b'{"pears": [["u1", "i2"]]}', b"[1, 2]",
                                     b'{"pairs": [[true, "i2"]]}', b'{"pairs": [["u1", 1.0]]}',
                                     b'{"pairs": [[null, "i2"]]}', b'{"pairs": [[["u1"], "i2"]]}'])
def test_malformed_predict_bodies_are_422(client, content):
    r = client.post("/api/predict", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"]


def test_integer_ids_are_read_as_their_strings(client):
    r = client.post("/api/predict", json={"pairs": [[7, "i2"]]})
    assert r.status_code == 200 and r.json()["predictions"][0]["user"] == "7"


def test_bodies_over_one_megabyte_are_413(client):
    big = json.dumps({"pairs": [["u1", "i2"]] * (MAX_BODY // 10)}).encode()
    assert len(big) > MAX_BODY
    r = client.post("/api/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json() == {"detail": "The request body is over 1,048,576 bytes."}

    def streamed():  # no Content-Length: the limit must count the bytes as they come
        for a in range(0, len(big), 65536):
            yield big[a:a + 65536]
    r = client.post("/api/predict", content=streamed(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "detail" in r.json()
    assert client.post("/api/predict", json={"pairs": [["u1", "i2"]] * 1000}).status_code == 200


def test_a_query_parameter_the_route_does_not_take_is_named(client):
    r = client.get("/api/users/u1/recommendations?limit=3")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]
    assert client.get("/api/items?q=Movie&n=2&page=2").json()["detail"][0]["loc"] == ["query", "page"]
    assert len(client.get("/api/users/u1/recommendations?n=3").json()["recommendations"]) == 3
    assert client.get("/healthz?probe=1").status_code == 200 and client.get("/?utm_source=x").status_code == 200
    twice = client.get("/api/users/u1/recommendations?n=3&n=4")  # gave 4, the last one
    assert twice.status_code == 422 and twice.json()["detail"][0]["loc"] == ["query", "n"]


def test_under_a_proxys_path_prefix_and_gzipped(holder):
    """Behind a proxy that serves the app under /recs and strips the prefix (``serve --root-path /recs``): the
    API docs fetch /recs/openapi.json, the API answers as before, strictly; long answers go gzipped to clients
    that accept it."""
    client = TestClient(create_app(holder), root_path="/recs")  # paths as uvicorn --root-path gives them on
    docs = client.get("/recs/docs").text
    assert "'/recs/openapi.json'" in docs and 'src="/recs/static-offline-docs/swagger-ui-bundle.js"' in docs
    assert client.get("/recs/api/users/u1/recommendations?n=3").status_code == 200
    assert client.get("/recs/api/users/u1/recommendations?limit=3").status_code == 422
    answer = client.get("/recs/api/map?n_items=50", headers={"Accept-Encoding": "gzip"})
    assert answer.headers["content-encoding"] == "gzip" and len(answer.json()["items"]) == 50
    assert "content-encoding" not in client.get("/recs/api/map?n_items=50",
                                                headers={"Accept-Encoding": "identity"}).headers


def test_a_body_that_stalls_is_408_and_a_whole_one_waits_for_its_disconnect(monkeypatch):
    """Half-sent bodies held their connections until shutdown, which logged each one's traceback."""
    import asyncio

    from fastapi import HTTPException

    import latentrec.use.serve.middleware as middleware

    monkeypatch.setattr(middleware, "BODY_IDLE_S", 0.05)
    said = []

    async def endpoint(scope, receive, send):
        try:
            while (await receive()).get("more_body"):
                pass
            said.append(await asyncio.wait_for(receive(), 1.0))  # after the body: no idle limit
        except HTTPException as e:
            said.append(e.status_code)

    def receiver(script):
        async def receive():
            if not script:
                await asyncio.Event().wait()  # a client that sends nothing more
            delay, message = script.pop(0)
            await asyncio.sleep(delay)
            return message
        return receive

    body, disconnect = {"type": "http.request", "body": b"{}"}, {"type": "http.disconnect"}
    for script, expected in (([(0, {**body, "more_body": True})], 408), ([(0, body), (0.2, disconnect)], disconnect)):
        asyncio.run(middleware.BodyLimit(endpoint, MAX_BODY)({"type": "http", "headers": []}, receiver(script), None))
        assert said.pop() == expected


def test_map_coordinates(client, holder):
    body = client.get("/api/map?n_items=50").json()
    pca, share = item_pca(holder.state.rec, 50, q=2)
    assert len(body["items"]) == 50 and body["variance_share"] == pytest.approx(share)
    assert [p["item"] for p in body["items"]] == list(pca["item"])
    assert [p["x"] for p in body["items"]] == pytest.approx(list(pca["pc1"]), abs=1e-6)
    assert all(np.isfinite([p["y"] for p in body["items"]]))
    n_items = len(holder.state.rec.items) - 1
    whole = client.get(f"/api/map?n_items={n_items}").json()
    for more in range(n_items + 1, n_items + 10):  # more than the catalogue is the same map, cached once
        assert client.get(f"/api/map?n_items={more}").json() == whole
    assert len(holder.state.maps) <= 4


def test_health_answers_while_a_model_call_runs(holder):
    """Model calls run on worker threads, so a long one (here: one waiting for the model) never holds up the event
    loop: /healthz answers at once, and the waiting call finishes when the model is free."""
    with TestClient(create_app(holder)) as client, ThreadPoolExecutor(2) as pool:  # one event loop for all calls
        with holder.lock:
            waiting = pool.submit(client.get, "/api/users/u1/recommendations")
            time.sleep(0.2)
            health = pool.submit(client.get, "/healthz")
            assert health.result(timeout=10).json()["status"] == "ok" and not waiting.done()
            assert pool.submit(client.head, "/healthz").result(timeout=10).status_code == 200
        assert waiting.result(timeout=30).status_code == 200


def test_head_is_get_without_the_body_and_a_bugs_500_is_json(holder, monkeypatch):
    import latentrec.use.serve.app as app_module

    client = TestClient(create_app(holder), raise_server_exceptions=False)
    for path in ("/", "/healthz", "/readyz", "/api/users/u1/recommendations", "/docs"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
    monkeypatch.setattr(app_module, "user_recommendations", lambda *a: 1 / 0)
    page = TestClient(create_app(holder, ["https://app.example"]), raise_server_exceptions=False)
    for answer in (client, page):  # with the headers every answer has: a page on an allowed origin reads it
        failed = answer.get("/api/users/u1/recommendations", headers={"Origin": "https://app.example"})
        assert failed.status_code == 500 and "internal error" in failed.json()["detail"]
        assert "server-timing" in failed.headers
    assert failed.headers["access-control-allow-origin"] == "https://app.example"
    assert "Server-Timing" in failed.headers["access-control-expose-headers"]


def test_every_answer_says_its_time_and_carries_back_the_request_id(client):
    answer = client.get("/api/users/u1/recommendations", headers={"X-Request-ID": "abc-123"})
    assert answer.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"app;dur=\d+\.\d", answer.headers["server-timing"])
    failed = client.get("/api/items/nope/similar")  # errors too
    assert failed.status_code == 404 and "server-timing" in failed.headers and "x-request-id" not in failed.headers


def test_ids_with_a_slash(tmp_path):
    rec = served()[0]
    users, items = rec.users.classes[1:], rec.items.classes[1:]
    users[0], items[0] = "a/b", "c/d"
    dataclasses.replace(rec, users=Vocab(users), items=Vocab(items), titles={}).save(tmp_path / "m")
    h = ModelHolder(tmp_path / "m")
    h.load()
    c = TestClient(create_app(h))
    assert c.get("/api/users/a%2Fb/recommendations").json()["known"] is True
    assert c.get("/api/items/c%2Fd/similar?n=2").json()["item"] == "c/d"
    blank = c.get("/api/users/%20/recommendations")  # spaces alone: no id (it echoed user "")
    assert blank.status_code == 422 and blank.json()["detail"][0]["loc"] == ["path", "user"]
    assert c.get("/api/items/%20/similar").status_code == 422
    assert c.post("/api/users/recommendations", json={"users": [" "]}).status_code == 422
    assert c.post("/api/predict", json={"pairs": [[" ", "c/d"]]}).status_code == 422


def test_cross_origin_pages_only_where_allowed(holder):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    allowed = TestClient(create_app(holder, allow_origins=["https://app.example"]))
    r = allowed.options("/api/predict", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    assert TestClient(create_app(holder)).options("/api/predict", headers=preflight).status_code == 405
    own = allowed.options("/api/predict", headers={**preflight, "Access-Control-Request-Headers": "content-type,"
                                                                                                   "authorization"})
    assert own.status_code == 200 and "authorization" in own.headers["access-control-allow-headers"].lower()


def test_a_burst_of_reloads_loads_at_most_twice(model_dir, monkeypatch):
    """20 reloads asked while a load runs (a SIGHUP storm, a deploy script per replica): the first loads, the rest
    share the one queued behind it, and every caller gets a success."""
    from concurrent.futures import ThreadPoolExecutor

    h = ModelHolder(model_dir)
    h.load()
    monkeypatch.setattr(ModelHolder, "_warm_up", lambda self, rec: time.sleep(0.5))  # a load that takes a while
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: h.reload(), range(20)))
    assert all(swapped for swapped, _ in answers) and 2 <= h.state.generation <= 3


def test_a_reload_that_raises_does_not_leave_later_reloads_waiting(model_dir, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    h = ModelHolder(model_dir)
    h.load()
    monkeypatch.setattr(ModelHolder, "_reload", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        h.reload()
    monkeypatch.undo()
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(h.reload).result(timeout=30)[0]  # not a wait on the interrupted one


def test_a_ranking_only_model_answers_lists_and_refuses_ratings_with_a_4xx(model_dir):
    rec = served()[0]
    assert rec.ranker is not None
    h = ModelHolder(model_dir)
    h.state = Loaded(dataclasses.replace(rec, model=None), 1, time.time())
    c = TestClient(create_app(h))
    r = c.post("/api/predict", json={"pairs": [["u1", "i1"]]})
    assert r.status_code == 400 and "rating model" in r.json()["detail"]
    top = c.get("/api/users/u1/recommendations?n=3").json()["recommendations"]
    ranked = recommend(dataclasses.replace(rec, model=None), "u1", 3)  # the ranker's order alone
    assert [t["item"] for t in top] == list(ranked["item"]) and {t["prediction"] for t in top} == {None}
    folded = c.post("/api/recommendations", json={"ratings": [{"item": "i1", "rating": 5}]})
    assert folded.status_code == 200 and len(folded.json()["recommendations"]) == 10
    assert c.get("/readyz").json()["model"]["answers"] == ["ranking"]


def test_not_ready_until_loaded_then_reload_from_loopback_only(tmp_path, caplog):
    path = tmp_path / "later"
    h = ModelHolder(path)
    with TestClient(create_app(h), client=LOCAL) as c:  # the start-up load fails: there is no model yet
        for _ in range(100):
            if h.last_error:
                break
            time.sleep(0.05)
        r = c.get("/readyz")
        assert r.status_code == 503 and "does not exist" in r.json()["last_reload_error"]
        assert c.get("/api/users/u1/recommendations").status_code == 503
        assert c.get("/healthz").status_code == 200
        served()[0].save(path)
        assert TestClient(create_app(h)).post("/admin/reload").status_code == 403  # not from loopback
        r = c.post("/admin/reload")
        assert r.status_code == 200 and r.json()["model"]["generation"] == 1
        assert c.get("/readyz").status_code == 200
        assert c.get("/api/users/u1/recommendations").status_code == 200


def test_broken_new_model_keeps_the_old_one_serving(tmp_path, caplog):
    path = tmp_path / "m"
    served()[0].save(path)
    h = ModelHolder(path)
    h.load()
    before = snapshot(path)
    c = TestClient(create_app(h), client=LOCAL)
    good = c.get("/api/users/u1/recommendations").json()
    (path / "model.json").write_text('{"format": "latentrec-model", "format_version": 1}')
    with caplog.at_level(logging.ERROR, logger="latentrec.serve"):
        r = c.post("/admin/reload")
    assert r.status_code == 409 and r.json()["reloaded"] is False and r.json()["model"]["generation"] == 1
    assert str(path) in r.json()["detail"] and "Generation 1 keeps serving." in caplog.text
    assert c.get("/api/users/u1/recommendations").json() == good
    assert c.get("/readyz").json()["last_reload_error"]
    served()[0].save(path)
    assert c.post("/admin/reload").json()["model"]["generation"] == 2
    assert c.get("/readyz").json()["last_reload_error"] is None
    assert set(before) == set(snapshot(path))


def test_failed_reload_detail_is_one_sentence(tmp_path, monkeypatch, caplog):
    path = tmp_path / "m"
    served()[0].save(path)
    h = ModelHolder(path)
    h.load()
    c = TestClient(create_app(h), client=LOCAL)
    meta = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps({**meta, "rating_range": "abc"}))
    r = c.post("/admin/reload")
    assert r.status_code == 409 and r.json()["detail"] == (
        f"{path}/model.json: field 'rating_range' must be two float32 numbers, the lower first, not \"abc\".")

    def broken(path):
        raise TypeError("return arrays must be of ArrayType")
    monkeypatch.setattr(Recommender, "load", broken)  # a bug the checks on load did not foresee
    with caplog.at_level(logging.ERROR, logger="latentrec.serve"):
        r = c.post("/admin/reload")
    assert r.status_code == 409 and r.json()["detail"] == f"Loading {path} failed unexpectedly; the server log has the details."
    assert "TypeError: return arrays must be of ArrayType" in caplog.text  # the traceback, for whoever fixes it
    assert c.get("/readyz").json()["last_reload_error"] == r.json()["detail"]
    assert c.get("/api/users/u1/recommendations").status_code == 200


def test_serving_never_writes_into_the_model_dir(model_dir, client):
    before = snapshot(model_dir)
    client.get("/api/users/u2/recommendations")
    client.post("/api/predict", json={"pairs": [["u1", "i1"]]})
    ModelHolder(model_dir).reload()
    assert snapshot(model_dir) == before


def test_many_threads_at_once(client, holder):
    """Predict reaches the parallel numba kernel; from many threads at once the process must survive and answer
    exactly what one thread at a time answers."""
    rec = holder.state.rec
    rng = np.random.default_rng(0)
    users, items = rec.users.classes[1:], rec.items.classes[1:]
    jobs = []
    for k in range(160):
        if k % 2:
            pairs = [[users[a], items[b]] for a, b in zip(rng.integers(0, len(users), 50), rng.integers(0, len(items), 50))]
            jobs.append(("post", "/api/predict", {"pairs": pairs}))
        else:
            jobs.append(("get", f"/api/users/{users[k % len(users)]}/recommendations?n=5", None))

    def call(job):
        method, url, body = job
        r = client.post(url, json=body) if method == "post" else client.get(url)
        return r.status_code, r.json()

    serial = [call(j) for j in jobs[:20]]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, jobs))
    assert all(status == 200 for status, _ in results)
    assert results[:20] == serial


def test_every_answer_matches_the_schema_the_api_documents(client, holder):
    """The response models in /openapi.json are what the routes send (the routes build their JSON themselves)."""
    from latentrec.use.serve import schemas

    rec = holder.state.rec
    user, item = rec.users.classes[1], rec.items.classes[1]
    answers = [
        (schemas.UserList, client.get(f"/api/users/{user}/recommendations?n=3")),
        (schemas.UserList, client.get("/api/users/nobody/recommendations?n=3")),
        (schemas.UserLists, client.post("/api/users/recommendations", json={"users": [user, "nobody"], "n": 2})),
        (schemas.UserList, client.post("/api/recommendations", json={"ratings": [{"item": item, "rating": 4}]})),
        (schemas.Search, client.get("/api/items", params={"q": "movie"})),
        (schemas.Similar, client.get(f"/api/items/{item}/similar?n=3")),
        (schemas.Predictions, client.post("/api/predict", json={"pairs": [[user, item], ["x", "y"]]})),
        (schemas.ItemMap, client.get("/api/map?n_items=5")),
        (schemas.Ready, client.get("/readyz")),
        (schemas.Health, client.get("/healthz")),
        (schemas.Error, client.get("/api/items/nope/similar")),
        (schemas.Error, client.post("/api/predict", json={"pairs": []})),
    ]
    for model, response in answers:
        model.model_validate(response.json(), strict=False)
    paths = client.get("/openapi.json").json()["paths"]
    documented = paths["/api/predict"]["post"]["responses"]
    assert documented["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Predictions")
    assert {"400", "413", "422", "503"} <= set(documented)
    for path in paths.values():  # a 422's detail may be a sentence (a rating off the scale): documented as Error
        for route in path.values():
            if "422" in route["responses"]:
                assert route["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    off_scale = client.post("/api/recommendations", json={"ratings": [{"item": item, "rating": 99}]})
    assert off_scale.status_code == 422 and isinstance(off_scale.json()["detail"], str)


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/json", "application/jsonx"])
def test_a_body_sent_as_a_form_is_told_to_be_json(client, content_type):
    r = client.post("/api/predict", content=b'{"pairs": [["u1", "i1"]]}', headers={"content-type": content_type})
    assert r.status_code == 415 and "Content-Type: application/json" in r.json()["detail"]


def test_requests_are_read_strictly(client, holder):
    """A misspelt field is refused rather than ignored, n is a JSON integer, a user id is not empty, and an
    unknown id is quoted cut short."""
    item = holder.state.rec.items.classes[1]
    ratings = [{"item": item, "rating": 4}]
    for body in ({"ratings": ratings, "N": 2}, {"ratings": ratings, "n": "3"}, {"pairs": [["u1", item]], "extra": 1},
                 {"ratings": [{"item": item, "rating": 4, "wieght": 2}]}):
        route = "/api/predict" if "pairs" in body else "/api/recommendations"
        assert client.post(route, json=body).status_code == 422, body
    assert client.get("/api/users//recommendations").status_code == 422
    r = client.get(f"/api/items/{'x' * 5000}/similar")
    assert r.status_code == 404 and len(r.json()["detail"]) < 200


def test_bodies_are_checked_off_the_event_loop(client, monkeypatch):
    """pydantic takes about 150 ms over a 1 MiB body: it runs on a worker thread, so /healthz is not held up; the
    OpenAPI document still describes the body."""
    import asyncio

    from latentrec.use.serve.app import PredictRequest

    seen = []
    check = PredictRequest.model_validate_json

    def on_thread(raw):
        try:
            asyncio.get_running_loop()
            seen.append("event loop")
        except RuntimeError:
            seen.append("worker thread")
        return check(raw)

    monkeypatch.setattr(PredictRequest, "model_validate_json", on_thread)
    assert client.post("/api/predict", json={"pairs": [["u1", "i1"]]}).status_code == 200
    assert seen == ["worker thread"]
    body = client.get("/openapi.json").json()["paths"]["/api/recommendations"]["post"]["requestBody"]
    ratings = body["content"]["application/json"]["schema"]["properties"]["ratings"]
    assert ratings["items"]["required"] == ["item", "rating"]  # the nested model written in place


def test_reload_from_a_web_page_is_refused(holder):
    """A browser adds Origin to a cross-site POST: a page open on the server's machine cannot reload the model."""
    c = TestClient(create_app(holder), client=LOCAL)
    r = c.post("/admin/reload", headers={"Origin": "https://example.com", "content-type": "text/plain"})
    assert r.status_code == 403 and "Origin" in r.json()["detail"]


def test_app_factory_reads_the_model_dir_from_the_environment(model_dir, tmp_path, monkeypatch, capsys):
    """``uvicorn --factory latentrec.use.serve.app:app_from_env``: the model is loaded before the app is returned;
    a missing variable or model dir is one sentence and uvicorn's start-up failure status, which stops its
    supervisor instead of restarting the worker."""
    monkeypatch.delenv("LATENTREC_MODEL", raising=False)
    for value, said in ((None, "Set LATENTREC_MODEL to the model directory to serve"),
                        (tmp_path / "none", f"Model directory {tmp_path / 'none'} does not exist")):
        if value is not None:
            monkeypatch.setenv("LATENTREC_MODEL", str(value))
        with pytest.raises(SystemExit) as stop:
            app_from_env()
        err = capsys.readouterr().err
        assert stop.value.code == 3 and err.startswith(f"latentrec: error: {said}") and err.count("\n") == 1
    monkeypatch.setenv("LATENTREC_MODEL", str(model_dir))
    client = TestClient(app_from_env())
    assert client.get("/readyz").json()["model"]["generation"] == 1
    assert client.get("/api/users/u1/recommendations?n=2").status_code == 200
    assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": "https://a.example"}).headers
    monkeypatch.setenv("LATENTREC_ALLOW_ORIGIN", "https://a.example, https://b.example")  # as --allow-origin
    client = TestClient(app_from_env())
    allowed = client.get("/healthz", headers={"Origin": "https://b.example"}).headers
    assert allowed["access-control-allow-origin"] == "https://b.example"
    monkeypatch.setenv("LATENTREC_ALLOW_ORIGIN", "https://a.example/app")
    with pytest.raises(SystemExit) as stop:
        app_from_env()
    assert stop.value.code == 3 and "LATENTREC_ALLOW_ORIGIN 'https://a.example/app' must be" in capsys.readouterr().err


def test_reload_asked_over_http_is_passed_on_before_this_process_reloads(holder):
    """``on_reload`` is how ``latentrec serve --workers`` passes /admin/reload on to the other workers."""
    asked = []
    app = create_app(holder, on_reload=lambda: asked.append(holder.state.generation))
    before = holder.state.generation
    assert TestClient(app, client=LOCAL).post("/admin/reload").json()["model"]["generation"] == before + 1
    assert TestClient(app).post("/admin/reload").status_code == 403  # not from loopback: not passed on either
    assert asked == [before]
