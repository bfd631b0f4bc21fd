"""Which column of a ratings file holds the user, the item and the rating: the one a ``--*-col`` option names
(or places, by position), else the one whose header name is a known alias; a headerless file's columns by position."""

from __future__ import annotations

import re

from latentrec.errors import ColumnNotFound, DataError, clip

ALIASES = {
    "user": {"user", "userid", "uid", "customer", "customerid", "custid", "reviewer", "reviewerid", "client",
             "clientid", "member", "memberid", "account", "accountid", "buyer", "buyerid", "player", "playerid"},
    "item": {"item", "itemid", "iid", "movie", "movieid", "product", "productid", "asin", "sku", "isbn", "book",
             "bookid", "track", "trackid", "song", "songid", "article", "articleid", "business", "businessid",
             "joke", "jokeid", "recipe", "recipeid", "game", "gameid", "anime", "animeid", "app", "appid", "artist",
             "artistid", "parentasin"},
    "rating": {"rating", "ratings", "score", "stars", "value", "overall"},
}
KNOWN_NAMES = set().union(*ALIASES.values())  # every alias: a first line holding one is a header
TITLE_NAMES = {"title", "booktitle", "movietitle", "itemtitle", "producttitle"}  # a column of item titles
TIMESTAMP_NAMES = ("timestamp", "unixreviewtime", "unixtime", "time", "ts", "datetime", "date", "ratedat", "createdat")
ROLES = ("user", "item", "rating")


def is_position(name: str) -> bool:
    """Whether a column option is a position (``4``), not a name."""
    return re.fullmatch(r"[0-9]+", name) is not None


def rating_at(n: int, positions: dict) -> int | None:
    """Where the rating of a line of ``n`` fields is, were it a headerless row with roles at ``positions``, as
    :func:`headerless_columns` places it; None where a position is off the line (or two are one)."""
    try:
        names = headerless_columns(n, positions, "")
    except DataError:
        return None
    return names.index("rating") if "rating" in names else None


def headerless_columns(n: int, cols: dict, where: str) -> list[str]:
    """The names of a headerless file's ``n`` columns: user, item, rating, timestamp in that order, unless
    ``cols`` places a role by position (``--rating-col 4``: the fourth column); the roles not placed take the
    columns left, in that order; the rest are ``extra1``, ``extra2``, ..."""
    placed = {role: _position(name, n, role, where) for role, name in cols.items() if name}
    _refuse_shared({role: at + 1 for role, at in placed.items()}, where)
    names: list[str | None] = [None] * n
    for role, at in placed.items():
        names[at] = role
    free = (at for at in range(n) if names[at] is None)
    for role, at in zip([r for r in (*ROLES, "timestamp") if r not in placed], free):
        names[at] = role
    extra = iter(range(1, n + 1))
    return [name or f"extra{next(extra)}" for name in names]


def _position(name: str, n: int, role: str, where: str) -> int:
    """The 0-based index of the column ``name`` gives by its 1-based position among ``n``."""
    if not (is_position(name) and 1 <= int(name) <= n):
        raise DataError(f"{where} has no header row, so --{role}-col {name} names no column; give its position, "
                        f"1 to {n} (1 is the first column), or add a header.")
    return int(name) - 1


def resolve_columns(columns: list, roles: tuple[str, ...], cols: dict, where: str) -> list[str]:
    """The column holding each role: the one named in ``cols``, else the one whose name is a known alias (of several:
    ``<role>_id``, then ``<role>``, then an alias ending in ``id``; still several: refused, naming them)."""
    names = [_resolve_column([str(c) for c in columns], role, cols.get(role), where) for role in roles]
    _refuse_shared(dict(zip(roles, names)), where)
    return names


def _refuse_shared(columns: dict, where: str) -> None:
    """One column read as two roles (``--user-col 2 --item-col 2``) is a mistake."""
    for role, column in columns.items():
        other = next((r for r, c in columns.items() if c == column and r != role), None)
        if other:
            raise DataError(f"{where}: the {role} and the {other} would both be read from column {column!r}; "
                            f"name another with --{other}-col.")


def _resolve_column(columns: list[str], role: str, wanted: str | None, where: str) -> str:
    if wanted:
        if wanted in columns:
            return wanted
        if is_position(wanted) and 1 <= int(wanted) <= len(columns):  # --rating-col 4: the fourth column
            return columns[int(wanted) - 1]
        alike = [c for c in columns if c.strip().casefold() == wanted.strip().casefold()]
        if len(alike) == 1:  # --rating-col rating for a header's " Rating ": spaces and case unseen in a message
            return alike[0]
        counted = f"; a position counts from 1, 1 to {len(columns)}" if is_position(wanted) else ""
        raise ColumnNotFound(f"{where} has no column {wanted!r} (its columns: {listed(columns)}{counted}).", role)
    found = [c for c in columns if normalized(c) in ALIASES[role]  # Book-Crossing's Book-Rating, Amazon's star_rating:
             or (role == "rating" and normalized(c).endswith("rating"))]  # beside a score, which is asked
    for better in ((f"{role}id",), (role,), None):  # "item_id" beside "item", "product_id" beside "sku": the id wins
        if len(found) > 1:
            found = [c for c in found if (normalized(c) in better if better else normalized(c).endswith("id"))] or found
    if len(found) == 1:
        return found[0]
    if found:
        raise ColumnNotFound(f"{where} has {len(found)} columns that could be the {role} ({listed(found)}); name "
                             f"one with --{role}-col ({role}_col=... in Python).", role)
    raise ColumnNotFound(
        f"{where} has no {role} column (its columns: {listed(columns)}); name it with --{role}-col "
        f"(load_ratings(..., {role}_col=...) in Python).", role
    )


def listed(values) -> str:
    """Values from a file (ids, column names), each clipped, for a message."""
    return ", ".join(clip(str(v)) for v in values)


def title_column(columns: list) -> str | None:
    """The column of item titles (``title``, ``Book-Title``, ...), if the header has one."""
    return next((c for c in columns if normalized(str(c)) in TITLE_NAMES), None)


def normalized(name: str) -> str:
    """A column name as the aliases are written: lower case, without ``_``, ``-``, ``.`` or spaces (User-ID: userid)."""
    return re.sub(r"[_\-. ]", "", name.lower())
