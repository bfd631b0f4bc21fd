"""The HTTP API and the page: the use-side functions (top-N, fold-in, similar items, predict, the PCA map)
behind FastAPI routes.

Status codes: 422 for malformed JSON or parameters and for ratings the model cannot use, 400 for a
request this model cannot answer (say, ratings from a ranking-only model), 404 for an unknown item,
413 for a body over 1 MiB, 408 for one that stalls, 415 for one not sent as JSON, 503 until a model is loaded, 403 for ``/admin/reload`` from
another host, 409 for a reload that failed (the model before it keeps serving).

Routes that call the model are plain functions, which FastAPI runs on its worker threads: a long request
(a big predict body) never holds up the event loop, so ``/healthz`` and ``/readyz`` answer at once.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field, StrictInt, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool

from latentrec.data.vocab import id_text
from latentrec.errors import ConfigError, DataError, LatentrecError, clip, one_line
from latentrec.use.coldstart import UserRatings, check_given, folds_in, ignored_items
from latentrec.use.interpret import item_pca
from latentrec.use.recommender import Recommender
from latentrec.use.records import records
from latentrec.use.serve.holder import Loaded, ModelHolder
from latentrec.use.serve.middleware import BodyLimit, BugsAsJson, CloseWhileDraining, HeadAsGet, Traced
from latentrec.use.serve.schemas import (
    Error,
    Health,
    ItemMap,
    Predictions,
    Ready,
    Reloaded,
    Search,
    Similar,
    UserList,
    UserLists,
)
from latentrec.use.similar import similar_items, title_matches
from latentrec.use.topn import excluded, recommend, users_top

STATIC = Path(__file__).parent / "static"
MAX_BODY = 1 << 20  # bytes; larger request bodies get 413
MAX_N = 1000  # the most items one list may ask for
MAX_USERS = 1000  # the most users one request for lists may ask for
MAX_BATCH_ITEMS = 100_000  # the most items in one answer of lists (1,000 users x 100): 9 MB of JSON
GZIP_BYTES = 1400  # answers longer than this go gzipped to clients that accept it (shorter fit one packet anyway)
MAPS_KEPT = 4  # /api/map answers cached per model (by item count)
REPEATABLE = {"exclude"}  # the query parameters taking a list (each other one is given once)
MODEL_ENV = "LATENTREC_MODEL"  # the model dir app_from_env serves
ORIGINS_ENV = "LATENTREC_ALLOW_ORIGIN"  # app_from_env's web origins allowed to call the API (comma-separated)
STARTUP_FAILURE = 3  # uvicorn's exit status for a worker that cannot start: its supervisor then stops, not restarts

# strict: a JSON true, 1.5 or null is refused (422), not read as the id "1", "1" or "None"
Id = Annotated[Annotated[StrictStr, Field(pattern=r"\S")] | StrictInt,  # spaces alone: no id
               Field(description="a raw user or item id (a string or an integer), as in the training file")]
PathId = Annotated[str, PathParam(pattern=r"\S")]
N = Annotated[int, Query(ge=1, le=MAX_N, description="how many items")]
Exclude = Annotated[list[str], Query(max_length=MAX_N, description="item ids the list must not hold (repeat the "
                                     "parameter for each, or separate them by commas, encoded or not: an id holding "
                                     "a comma goes in the body of POST /api/users/recommendations); ids the model "
                                     "does not know are listed in the answer's ignored")]


class Rated(BaseModel):
    item: Id
    rating: float = Field(strict=True, allow_inf_nan=False)  # a JSON number: true or "5" is refused

    model_config = {"extra": "forbid"}


class FoldInRequest(BaseModel):
    ratings: list[Rated] = Field(min_length=1, max_length=10_000, description="a new user's ratings")
    n: int = Field(10, ge=1, le=MAX_N, strict=True)
    exclude: list[Id] = Field([], max_length=MAX_N, description="item ids the list must not hold; ids the model "
                                                                 "does not know are listed in ignored")

    model_config = {"extra": "forbid",  # a misspelt field ("N", "limit") is refused, not ignored
                    "json_schema_extra": {"examples": [{"ratings": [{"item": "50", "rating": 5},
                                                                    {"item": "181", "rating": 4}], "n": 10}]}}


class ListsRequest(BaseModel):
    users: list[Id] = Field(min_length=1, max_length=MAX_USERS, description="raw user ids")
    n: int = Field(10, ge=1, le=MAX_N, strict=True,
                   description=f"items a list; users x n at most {MAX_BATCH_ITEMS:,}")
    exclude: list[Id] = Field([], max_length=MAX_N, description="item ids no list may hold; ids the model does not "
                                                                 "know are listed in each list's ignored")

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [{"users": ["196", "186"], "n": 10}]}}


class PredictRequest(BaseModel):
    pairs: list[tuple[Id, Id]] = Field(min_length=1, description="(user, item) pairs")

    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [{"pairs": [["196", "242"], ["186", "302"]]}]}}


def user_recommendations(rec: Recommender, users: list[str], n: int, exclude: list[str] = ()) -> list[dict]:
    """``recommend(rec, user, n, exclude=exclude)`` of each of ``users`` as JSON-ready data, built straight from
    :func:`users_top` (the DataFrame and the id encoding of ``recommend`` cost more than the ranking itself)."""
    codes = np.array([rec.users.index(user) for user in users], np.int64)
    ignored = ignored_items(rec, exclude)
    lists = []
    for user, u, (items, scores) in zip(users, codes, users_top(rec, codes, n, skip=excluded(rec, exclude))):
        lists.append({"user": rec.users.classes[u] if u else id_text(user), "known": bool(u), "folded_in": False,
                      "ignored": ignored, "recommendations": [
                          {"rank": k, "item": i, "title": rec.titles.get(i, ""),
                           "prediction": s if math.isfinite(s) else None}
                          for k, (i, s) in enumerate(zip(rec.items.decode(items), scores.tolist()), 1)]})
    return lists


def json_body(model: type[BaseModel]):
    """A dependency giving the request's JSON body checked against ``model`` on a worker thread: pydantic takes
    about 150 ms over a 1 MiB body, which on the event loop would hold up every other request (``/healthz`` too).
    Pass :func:`body_schema` of the same model as the route's ``openapi_extra``."""
    async def read(request: Request) -> BaseModel:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise HTTPException(415, "The body must be JSON, sent with Content-Type: application/json.")
        raw = await request.body()
        try:
            return await run_in_threadpool(model.model_validate_json, raw)
        except ValidationError as e:
            raise RequestValidationError([{**d, "loc": ("body", *d["loc"])} for d in e.errors()]) from None
    return read


def query_names(dependant) -> set[str]:
    """The query parameters a route (its FastAPI ``Dependant``) and its dependencies take."""
    return {p.alias for p in dependant.query_params}.union(*(query_names(d) for d in dependant.dependencies))


async def known_query(request: Request) -> None:
    """A query parameter an ``/api`` route does not take is a 422, as a misspelt body field is (``?limit=3`` was
    ignored and gave the default 10). The page and the health checks take any (a link may carry ``?utm_source``)."""
    route = request.scope.get("route")
    if not getattr(route, "path", "").startswith("/api/"):  # the route's path: under --root-path too
        return
    taken = query_names(route.dependant)
    unknown = [name for name in request.query_params if name not in taken]
    if unknown:
        raise RequestValidationError([{"loc": ("query", name), "msg": "Unknown query parameter", "type": "extra_forbidden"}
                                      for name in dict.fromkeys(unknown)])
    repeated = [name for name in taken - REPEATABLE if len(request.query_params.getlist(name)) > 1]
    if repeated:  # ?n=3&n=4 gave 4 (the last one)
        raise RequestValidationError([{"loc": ("query", name), "msg": "Give this parameter once", "type": "repeated"}
                                      for name in repeated])


def body_schema(model: type[BaseModel]) -> dict:
    """The OpenAPI ``requestBody`` of a route reading ``model`` through :func:`json_body` (its ``$defs`` written in
    place, as the document has no room for them)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(x):
        if isinstance(x, dict):
            return inline(defs[x["$ref"].rsplit("/", 1)[1]]) if "$ref" in x else {k: inline(v) for k, v in x.items()}
        return [inline(v) for v in x] if isinstance(x, list) else x

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


def fails(*codes: int) -> dict:
    """The error answers a route documents besides its 200 (each ``{"detail": ...}``): ``codes`` and 422, whose
    detail is a sentence or, for malformed parameters or JSON, a list naming each bad field (``Error``, not FastAPI's
    ``HTTPValidationError``, which allows the list only)."""
    return {code: {"model": Error} for code in (*codes, 422)}


def check_origins(origins: Sequence[str], what: str) -> None:
    """Refuse, in one sentence naming ``what`` gave it, an origin a browser would never send: its Origin header has
    no path, not even a trailing slash."""
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^/\s]+", origin):
            raise ConfigError(f"{what} {origin!r} must be * or scheme://host[:port] with no path "
                              f"(e.g. https://app.example.com).")


def is_loopback(host: str | None) -> bool:
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


def create_app(holder: ModelHolder, allow_origins: Sequence[str] = (),
               on_reload: Callable[[], None] | None = None) -> FastAPI:
    """The server for ``holder``'s model dir; loads it in the background at start-up if it is not loaded yet.
    ``allow_origins``: web pages on these origins may call the API from a browser (CORS; ``*`` for any).
    ``on_reload``: called on the event loop when ``/admin/reload`` is accepted, before this process reloads
    (``latentrec serve --workers`` passes the reload on to the other workers)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if holder.state is None:
            threading.Thread(target=holder.reload, name="latentrec-load", daemon=True).start()
        yield

    app = FastAPIOffline(title="latentrec",  # /docs with its viewer shipped, not fetched from a CDN
                         summary="Recommendations, similar items and predictions from a trained model.",
                         lifespan=lifespan, dependencies=[Depends(known_query)])
    app.add_middleware(BugsAsJson)  # innermost: its 500 passes through the others
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_middleware(CloseWhileDraining, holder=holder)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_BYTES)  # for clients that send Accept-Encoding: gzip
    if allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(allow_origins), allow_methods=["GET", "POST"],
                           allow_headers=["*"],  # a page may send its own headers too (Authorization for a gateway)
                           expose_headers=["Server-Timing", "X-Request-ID"])
    app.add_middleware(HeadAsGet)
    app.add_middleware(Traced)

    def model() -> Loaded:
        state = holder.state
        if state is None:
            raise HTTPException(503, "The model is still loading." if holder.last_error is None
                                else f"No model is loaded: {holder.last_error}")
        return state

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, e: RequestValidationError) -> JSONResponse:
        """422 naming each bad field, without echoing the input back (it may be large, or NaN, not JSON)."""
        return JSONResponse({"detail": [{"loc": list(d["loc"]), "msg": d["msg"], "type": d["type"]} for d in e.errors()]},
                            status_code=422)

    @app.exception_handler(LatentrecError)
    async def latentrec_error(request: Request, e: LatentrecError) -> JSONResponse:
        return JSONResponse({"detail": one_line(e)}, status_code=422 if isinstance(e, DataError) else 400)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz() -> dict:
        """The process answers (with several workers, ``pid`` says which one)."""
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/readyz", tags=["health"], response_model=Ready, responses={503: {"model": Ready}})
    async def readyz() -> JSONResponse:
        """200 once a model is loaded (with what it is), 503 before, and while the server drains to stop."""
        state = holder.state
        ready = state is not None and not holder.draining
        body = {"ready": ready, "draining": holder.draining, "pid": os.getpid(), "model_dir": str(holder.model_dir),
                "last_reload_error": holder.last_error}
        if state is not None:
            body["model"] = state.info()
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/api/users/{user:path}/recommendations", tags=["recommendations"], response_model=UserList,
             responses=fails(503))
    def user_list(user: PathId, n: N = 10, exclude: Exclude = ()) -> JSONResponse:
        """Top-n items the user has not rated, none of ``exclude``; an unknown user gets the non-personalized list
        (``known: false``)."""
        rec = model().rec
        ids = [i for e in exclude for i in e.split(",") if i.strip()]
        if len(ids) > MAX_N:  # counted after the commas, as the body's list is
            raise RequestValidationError([{"loc": ("query", "exclude"), "msg": f"At most {MAX_N} item ids",
                                           "type": "too_long"}])
        with holder.lock:
            answer = user_recommendations(rec, [user], n, ids)[0]
        return JSONResponse(answer)

    @app.post("/api/users/recommendations", tags=["recommendations"], response_model=UserLists,
              responses=fails(408, 413, 415, 503), openapi_extra=body_schema(ListsRequest))
    def user_lists(body: Annotated[ListsRequest, Depends(json_body(ListsRequest))]) -> JSONResponse:
        """Top-n lists of many users in one request (a mail campaign, pages rendered ahead), each as
        ``GET /api/users/{user}/recommendations`` answers it."""
        rec = model().rec
        if len(body.users) * body.n > MAX_BATCH_ITEMS:
            raise HTTPException(422, f"{len(body.users):,} lists of {body.n:,} items are over {MAX_BATCH_ITEMS:,} "
                                     f"items in one answer; ask for fewer users or a smaller n.")
        with holder.lock:  # one model call at a time; the answer is rendered after, letting the next call in
            lists = user_recommendations(rec, [str(u) for u in body.users], body.n, [str(i) for i in body.exclude])
        return JSONResponse({"lists": lists})

    @app.post("/api/recommendations", tags=["recommendations"], response_model=UserList, responses=fails(408, 413, 415, 503),
              openapi_extra=body_schema(FoldInRequest))
    def fold_in_recommendations(body: Annotated[FoldInRequest, Depends(json_body(FoldInRequest))]) -> JSONResponse:
        """Top-n for a new user described by a few ratings: folded in with the item factors fixed, nothing stored."""
        rec = model().rec
        given = UserRatings([str(r.item) for r in body.ratings], [r.rating for r in body.ratings],
                            "the request")
        check_given(rec, given)  # every rating on the scale, known item or not
        ignored = ignored_items(rec, given.items)
        kept = [(i, r) for i, r in zip(given.items, given.ratings) if i not in ignored]  # "ignored" says the rest:
        known = UserRatings([i for i, _ in kept], [r for _, r in kept], "the request")  # no warning in the log
        exclude = [str(i) for i in body.exclude]
        with holder.lock:
            top = recommend(rec, None, body.n, ratings=known if known.items else None, exclude=exclude)
        folded = folds_in(rec, given)  # none known: the non-personalized list
        return JSONResponse({"user": None, "known": folded, "folded_in": folded,
                             "ignored": ignored_items(rec, [*given.items, *exclude]),
                             "recommendations": records(top, drop=("known",))})

    @app.get("/api/items", tags=["items"], response_model=Search, responses=fails(503))
    def search_items(q: Annotated[str, Query(min_length=1, max_length=200,
                                                   description="title or part of it, or an item id")],
                           n: Annotated[int, Query(ge=1, le=MAX_N)] = 20) -> JSONResponse:
        """Items whose title matches ``q`` (case-insensitive; exact titles first), most-rated first, after the
        item whose id is ``q`` (so data without titles can be searched too)."""
        rec = model().rec
        with holder.lock:
            by_id = [q.strip()] if q.strip() in rec.items else []
            ids = (by_id + [i for i in title_matches(rec, q, exact_wins=False) if i not in by_id])[:n]
            counts = rec.item_counts[rec.items.encode(ids)] if ids else np.zeros(0, np.int64)
        return JSONResponse({"query": q, "items": [{"item": i, "title": rec.titles.get(i, ""), "n_ratings": int(c)}
                                                   for i, c in zip(ids, counts)]})

    @app.get("/api/items/{item:path}/similar", tags=["items"], response_model=Similar, responses=fails(400, 404, 503))
    def similar(item: PathId, n: N = 10,
                      min_ratings: Annotated[int, Query(ge=0, description="only items rated this often")] = 0
                      ) -> JSONResponse:
        """Items nearest to ``item`` as ``latentrec similar`` finds them; 404 for an unknown item."""
        rec = model().rec
        known = rec.items.index(item)
        if not known:
            raise HTTPException(404, f"Item {clip(item)} is not in the model (it had no training ratings).")
        item = rec.items.classes[known]  # as the model holds it (" 50" is 50)
        with holder.lock:
            sims = similar_items(rec, item, n, min_ratings)
        return JSONResponse({"item": item, "title": rec.titles.get(item, ""),
                             "similar": records(sims)})

    @app.post("/api/predict", tags=["predictions"], response_model=Predictions, responses=fails(400, 408, 413, 415, 503),
              openapi_extra=body_schema(PredictRequest))
    def predict(body: Annotated[PredictRequest, Depends(json_body(PredictRequest))]) -> JSONResponse:
        """Predicted ratings for (user, item) pairs; ``known`` is false where either id fell back to a damped mean
        rating (the user's, the item's, or the global mean)."""
        rec = model().rec
        users = np.array([str(u) for u, _ in body.pairs], dtype=object)
        items = np.array([str(i) for _, i in body.pairs], dtype=object)
        with holder.lock:
            out = rec.predict(users, items)
        return JSONResponse({"predictions": records(out)})

    @app.get("/api/map", tags=["items"], response_model=ItemMap, responses=fails(400, 503))
    def item_map(n_items: Annotated[int, Query(ge=3, le=20_000, description="the most-rated items")] = 1000
                       ) -> JSONResponse:
        """The PCA map of the item factors that ``latentrec interpret`` draws, as coordinates."""
        state = model()
        n_items = min(n_items, len(state.rec.items) - 1)  # asking for more than the catalogue is the same map
        with holder.lock:
            if n_items not in state.maps:
                pca, share = item_pca(state.rec, n_items, q=2)
                while len(state.maps) >= MAPS_KEPT:
                    del state.maps[next(iter(state.maps))]  # the oldest
                state.maps[n_items] = {"variance_share": share, "items": [
                    {"item": str(i), "title": t, "n_ratings": c, "x": x, "y": y}
                    for i, t, c, x, y in zip(*(pca[k].tolist() for k in ("item", "title", "n_ratings", "pc1", "pc2")))]}
            answer = state.maps[n_items]
        return JSONResponse(answer)

    @app.post("/admin/reload", tags=["admin"], response_model=Reloaded,
              responses={403: {"model": Error}, 409: {"model": Reloaded}})
    async def reload(request: Request) -> JSONResponse:
        """Read the model dir again and swap it in (loopback clients only); on failure the old model keeps serving
        and the answer is 409 with the reason. With ``latentrec serve --workers``, every worker reloads; the
        answer is the one that received the request."""
        if request.client is None or not is_loopback(request.client.host):
            raise HTTPException(403, "Reload is only accepted from the loopback interface.")
        if "origin" in request.headers:  # a browser's request: a web page open on this machine must not reload
            raise HTTPException(403, "Reload is not accepted from a web page (the request carries an Origin header); "
                                     "send it with curl or kill -HUP.")
        if on_reload is not None:
            on_reload()
        swapped, message = await run_in_threadpool(holder.reload)
        state = holder.state
        return JSONResponse({"reloaded": swapped, "detail": message, "model": state.info() if state else None},
                            status_code=200 if swapped else 409)

    return app


def app_from_env() -> FastAPI:
    """The app for an ASGI server of your own, serving the model dir named by ``$LATENTREC_MODEL`` (web pages on the
    comma-separated origins of ``$LATENTREC_ALLOW_ORIGIN`` may call it, as ``--allow-origin`` allows them):
    ``LATENTREC_MODEL=model uvicorn --factory latentrec.use.serve.app:app_from_env --workers 4``. The model is
    loaded here, before the server listens. A missing variable or a model that cannot be read is one sentence on
    stderr and exit status 3, uvicorn's start-up failure, which stops its supervisor rather than restarting
    workers that would fail the same way."""
    try:
        origins = [o.strip() for o in os.environ.get(ORIGINS_ENV, "").split(",") if o.strip()]
        check_origins(origins, ORIGINS_ENV)
        holder = ModelHolder(model_dir_from_env())
        holder.load()
    except LatentrecError as e:
        print(f"latentrec: error: {one_line(e)}", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_FAILURE) from None
    return create_app(holder, origins)


def model_dir_from_env() -> str:
    """``$LATENTREC_MODEL``, or one sentence saying how to set it."""
    path = os.environ.get(MODEL_ENV, "").strip()
    if not path:
        raise ConfigError(f"Set {MODEL_ENV} to the model directory to serve (written by `latentrec train`), e.g. "
                          f"{MODEL_ENV}=model uvicorn --factory latentrec.use.serve.app:app_from_env.")
    return path
