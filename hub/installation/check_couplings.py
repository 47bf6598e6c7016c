"""Reading the ``[[coupling]]`` tables of an installation config (the checks of
:mod:`anamnesis.hub.installation.check`, for :class:`~.config.Coupling`).

Whether two agents' weight vectors have one shape is known only when their models
exist: the rehearsal (:class:`anamnesis.hub.clock.rehearse.Rehearsal`) and the hub check
it there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anamnesis.hub.installation.check import (
    _MISSING,
    _array_of_tables,
    _Checker,
    _show,
    read_ends,
)
from anamnesis.hub.installation.config import COUPLING_KEYS, COUPLING_MODES, Coupling

#: Most weights a coupling's mask may name (the flat vectors of today's models are
#: smaller; OSC carries at most MAX_WEIGHTS of them).
MAX_MASK = 65536


def read_couplings(c: _Checker, raw: Any, ids: Sequence[str]) -> list[Coupling]:
    """The ``[[coupling]]`` tables (see :class:`Coupling`), problems added to ``c``."""
    couplings: list[Coupling] = []
    seen: dict[tuple[str, str], int] = {}
    for i, item in enumerate(_array_of_tables(c, raw, "coupling")):
        path = ("coupling", i)
        where = f"[[coupling]] #{i + 1}"
        t = c.table(item, path, where)
        c.keys(t, COUPLING_KEYS, path, where)
        ends = read_ends(c, t, ids, path, where)
        mode = c.string(t, "mode", path, where, "blend", COUPLING_MODES)
        kappa = c.number(t, "kappa", path, where, 0.05, 0.0, 1.0)
        rate = c.number(t, "rate_hz", path, where, 20.0, 1.0, 100.0, unit="Hz")
        gain = c.number(t, "gain", path, where, 1.0, -16.0, 16.0)
        noise = c.number(t, "noise", path, where, 0.0, 0.0, 100.0)
        mask = _read_mask(c, t.get("mask", _MISSING), (*path, "mask"), where)
        src, dst = ends
        if src is None or dst is None:
            continue
        where = f"coupling {src} ~> {dst}"
        if src == dst:
            c.add(path, where, "a coupling joins two different agents")
            continue
        pair = (src, dst)
        if pair in seen or (dst, src) in seen:
            other = seen.get(pair, seen.get((dst, src)))
            c.add(path, where, f"agents {src} and {dst} are coupled twice (also [[coupling]] "
                  f"#{(other or 0) + 1}); one coupling per pair")
            continue
        seen[pair] = i
        couplings.append(Coupling(source=src, target=dst, mode=mode, kappa=kappa,
                                  rate_hz=rate, gain=gain, noise=noise, mask=mask))
    return couplings


def _read_mask(c: _Checker, value: Any, path: Sequence[Any], where: str
               ) -> tuple[int, ...] | None:
    if value is _MISSING or value is None:
        return None
    if (not isinstance(value, list) or not value or len(value) > MAX_MASK
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < MAX_MASK
                       for v in value)):
        c.add(path, where, f"mask must be a non-empty list of weight indices (whole numbers "
              f"0-{MAX_MASK - 1}); got {_show(value)}")
        return None
    if len(set(value)) != len(value):
        c.add(path, where, "mask names a weight twice")
        return None
    return tuple(sorted(value))
