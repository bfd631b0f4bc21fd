"""Answers as JSON-ready records, as ``--json`` prints them and the HTTP API sends them."""

from __future__ import annotations

import math

import pandas as pd

ID_COLUMNS = ("user", "item")


def records(df: pd.DataFrame, drop: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a frame as JSON-ready dicts without the ``drop`` columns: Python scalars, NaN as null (a
    ranking-only model predicts no rating), and ids as text, as ``model.json`` holds them (the DataFrame answers give
    whole-number ids as integers; JSON keeps one type whatever the data)."""
    columns = [c for c in df.columns if c not in drop]

    def values(c: str) -> list:
        if c in ID_COLUMNS:
            return [str(v) for v in df[c].tolist()]
        if df[c].dtype.kind == "f":
            return [None if isinstance(v, float) and not math.isfinite(v) else v for v in df[c].tolist()]
        return df[c].tolist()

    return [dict(zip(columns, row)) for row in zip(*map(values, columns))]
