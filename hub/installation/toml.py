"""TOML for the installation config: a small writer, and the line of a key in a source text.

:func:`dump_toml` (with :func:`toml_value` for one value) writes the subset that
:meth:`anamnesis.hub.installation.config.Config.to_dict` produces — top-level
scalars, tables, arrays of tables, inline tables — so that a config written out
reads back equal. :class:`_Locator` maps key paths such as ``("agent", 2, "preset")``
to 1-based source lines for the checker's ``file:line`` messages (``tomllib``
gives no positions; a best effort: a key it cannot place falls back to its table).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


# ---------------------------------------------------------------------------
# A small TOML writer (the subset to_dict produces)
# ---------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    return key if _BARE_KEY_RE.match(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    """One TOML value: string, bool, int, finite float, array or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML has no value for a non-finite float ({value})")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return toml_value(value.tolist())
    raise ValueError(f"cannot write a {type(value).__name__} as TOML")


def dump_toml(data: Mapping[str, Any], header: str | None = None) -> str:
    """TOML text for ``data``: top-level scalars, tables (dicts of values) and arrays
    of tables (lists of dicts); nested dicts inside a table become inline tables."""
    lines: list[str] = [f"# {header}"] if header else []
    plain = {k: v for k, v in data.items()
             if not isinstance(v, Mapping) and not _is_table_array(v)}
    for k, v in plain.items():
        lines.append(f"{_toml_key(k)} = {toml_value(v)}")
    for k, v in data.items():
        if isinstance(v, Mapping):
            lines += ["", f"[{_toml_key(k)}]"]
            lines += [f"{_toml_key(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
        elif _is_table_array(v) and k not in plain:
            for item in v:
                lines += ["", f"[[{_toml_key(k)}]]"]
                lines += [f"{_toml_key(kk)} = {toml_value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, Mapping) for i in v)


# ---------------------------------------------------------------------------
# Finding lines in the source text
# ---------------------------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*(\[\[|\[)\s*([^\]]+?)\s*(\]\]|\])\s*(#.*)?$")
_KEYLINE_RE = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
                         r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=(.*)$")
_INLINE_KEY_RE = re.compile(r"[{,]\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")


def _split_dotted(key: str) -> tuple[str, ...]:
    parts = re.findall(r"\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+", key)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def _bracket_balance(text: str) -> int:
    """Open [ and { minus closed ones outside strings and comments (best effort)."""
    depth, quote, i = 0, "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth


class _Locator:
    """Maps key paths such as ``("agent", 2, "preset")`` to 1-based source lines."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        counts: dict[tuple[str, ...], int] = {}
        table: tuple[Any, ...] = ()
        depth = 0
        in_string = ""
        for number, raw in enumerate(text.splitlines(), start=1):
            if in_string:
                if in_string in raw:
                    in_string = ""
                continue
            if depth > 0:  # inside a multi-line array or inline table
                depth += _bracket_balance(raw)
                continue
            header = _HEADER_RE.match(raw)
            if header and _bracket_balance(raw) == 0:
                names = _split_dotted(header.group(2))
                if header.group(1) == "[[":
                    idx = counts.get(names, 0)
                    counts[names] = idx + 1
                    table = (*self._resolve(names[:-1], counts), names[-1], idx)
                else:
                    table = (*self._resolve(names, counts),)
                self.lines.setdefault(table, number)
                continue
            keyline = _KEYLINE_RE.match(raw)
            if keyline:
                path = (*table, *_split_dotted(keyline.group(1)))
                self.lines.setdefault(path, number)
                rest = keyline.group(2)
                for inner in _INLINE_KEY_RE.finditer(rest):
                    self.lines.setdefault((*path, _split_dotted(inner.group(1))[0]), number)
                for quote in ('"""', "'''"):
                    if rest.count(quote) == 1:
                        in_string = quote
                depth = max(0, _bracket_balance(rest))

    @staticmethod
    def _resolve(names: tuple[str, ...], counts: Mapping[tuple[str, ...], int]) -> tuple[Any, ...]:
        """Insert array indices: ``[agent.params]`` belongs to the latest ``[[agent]]``."""
        out: list[Any] = []
        for i, name in enumerate(names):
            out.append(name)
            n = counts.get(tuple(names[: i + 1]))
            if n:
                out.append(n - 1)
        return tuple(out)

    def line(self, path: Sequence[Any]) -> int | None:
        """The line of ``path``, else of its nearest enclosing key or table, else None."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None


__all__ = ["dump_toml"]
