"""What each route answers, as pydantic models: they document the API (``/openapi.json``, ``/docs``) so that
generated clients know the fields. The routes build their JSON directly (faster than validating it again)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")  # every field the API sends is documented


class Error(Answer):
    detail: str | list[dict] = Field(description="one sentence; for malformed parameters or JSON (422), a list "
                                                 "naming each bad field: {loc, msg, type}")


class TitledItem(Answer):
    item: str
    title: str = Field(description="empty where the data had no titles")


class Recommended(TitledItem):
    rank: int
    prediction: float | None = Field(description="the rating model's prediction; null from a ranking-only model")


class UserList(Answer):
    user: str | None = Field(description="null for a new user described by ratings")
    known: bool = Field(description="true: a personal list (a known user's, or folded in from ratings of known "
                                    "items); false: the non-personalized (most-rated first) list")
    folded_in: bool = Field(description="the list comes from the ratings in the request")
    ignored: list[str] = Field(description="items in the request (rated, or to exclude) that the model does "
                                                    "not know, each once")
    recommendations: list[Recommended]


class UserLists(Answer):
    lists: list[UserList] = Field(description="one list for each user asked, in the order asked")


class Item(TitledItem):
    n_ratings: int = Field(description="training ratings of the item")


class Search(Answer):
    query: str
    items: list[Item]


class Neighbour(TitledItem):
    rank: int
    similarity: float
    n_ratings: int


class Similar(Answer):
    item: str
    title: str
    similar: list[Neighbour]


class Prediction(TitledItem):
    user: str
    prediction: float = Field(description="clipped to the training ratings' scale")
    known_user: bool = Field(description="false: the item's damped mean rating answered (the global mean if both "
                                         "are unknown)")
    known_item: bool = Field(description="false: the user's damped mean rating answered (the global mean if both "
                                         "are unknown)")
    known: bool = Field(description="both ids known")


class Predictions(Answer):
    predictions: list[Prediction]


class MapPoint(TitledItem):
    n_ratings: int
    x: float = Field(description="first principal component of the item factors")
    y: float = Field(description="second principal component")


class ItemMap(Answer):
    variance_share: list[float] = Field(description="share of the factors' variance each component explains")
    items: list[MapPoint]


class ModelInfo(Answer):
    kind: str | None = Field(description="the rating model's kind; null for a ranking-only model dir")
    ranker: str | None = Field(description="the ranking model's kind; null when the rating model orders lists")
    answers: list[str] = Field(description='"ratings" and/or "ranking"')
    n_users: int
    n_items: int
    rating_range: list[float]
    generation: int = Field(description="1 at start-up, one more for each reload")
    loaded_at: str = Field(description="UTC, ISO 8601")


class Ready(Answer):
    ready: bool = Field(description="false before a model is loaded, and while the server drains to stop")
    draining: bool = Field(description="the server is stopping (serve --drain): send new requests elsewhere")
    pid: int = Field(description="the answering process (one of the workers under --workers)")
    model_dir: str
    last_reload_error: str | None
    model: ModelInfo | None = None


class Reloaded(Answer):
    reloaded: bool
    detail: str
    model: ModelInfo | None


class Health(Answer):
    status: str
    pid: int = Field(description="the process that answered (with several workers, which one)")
