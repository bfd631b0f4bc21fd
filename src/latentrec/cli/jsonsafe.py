"""JSON that other programs can read: non-finite floats become null."""

from __future__ import annotations

import math


def json_safe(obj):
    """``obj`` with every NaN or infinite float (in nested dicts, lists, tuples) replaced by None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
