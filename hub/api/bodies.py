"""What the hub accepts as a JSON body (REST) or message (WebSocket), checked at the edge.

:func:`decode_json` is ``json.loads`` with the limits a hostile client would probe: no
``NaN``/``Infinity`` (not JSON, though Python reads them), no number that overflows
float64 (``1e999`` would be infinity), no integer of more than :data:`MAX_INT_DIGITS`
digits (Python refuses 4,300 with a ValueError deep in a handler), nesting at most
:data:`MAX_DEPTH` deep, valid UTF-8 and no string that is not text (a lone surrogate
escape, which no UTF-8 encoder — OSC's, SQLite's — can write). Anything else is a
:class:`~anamnesis.hub.core.errors.HubError` (a 400) that says which limit, never a
RecursionError or a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

from anamnesis.hub.core.errors import HubError

#: Deepest nesting of arrays and objects a body may have (the API's deepest is 3).
MAX_DEPTH = 32
#: Longest integer accepted, in digits (float64 ends at 309).
MAX_INT_DIGITS = 320


def _constant(name: str) -> Any:
    raise HubError(f"malformed JSON body: {name} is not a JSON number")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise HubError(f"malformed JSON body: an integer of {len(text)} digits "
                       f"(at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise HubError(f"malformed JSON body: {text[:40]} is beyond float64's range")
    return value


def _problem(value: Any) -> str | None:
    """What is wrong with a parsed ``value``: nesting past :data:`MAX_DEPTH` or a string
    that is not text (a lone surrogate, ``"\\ud800"``: no UTF-8 for it); iterative."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string with a lone surrogate (not text)"
        elif isinstance(item, (list, dict)):
            if depth > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} deep"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def decode_json(raw: bytes | str) -> Any:
    """``raw`` as JSON within this module's limits; ``HubError`` naming what is wrong."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_constant, parse_int=_int,
                           parse_float=_float)
    except UnicodeDecodeError as exc:
        raise HubError(f"malformed JSON body: not UTF-8 ({exc.reason} at byte "
                       f"{exc.start})") from None
    except json.JSONDecodeError as exc:
        raise HubError(f"malformed JSON body: {exc}") from None
    except RecursionError:
        raise HubError(f"malformed JSON body: nested more than {MAX_DEPTH} deep") from None
    problem = _problem(value)
    if problem is not None:
        raise HubError(f"malformed JSON body: {problem}")
    return value


__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "decode_json"]
