"""OSCQuery for the whole installation, and the hub's zeroconf announcement.

A controller that speaks OSCQuery (ossia score, Chataigne, TouchDesigner, python-oscquery)
finds the hub by zeroconf (``_oscjson._tcp``, ``_osc._udp``; instance ``anamnesis hub
NAME``) and reads one namespace for the piece: the hub's commands (those of
:mod:`anamnesis.hub.api.osc`) and every adopted agent's parameters under
``/hub/agent/ID/PARAM``, with their types, ranges, units and current values — so a
device saved in a score keeps working while agents come and go (their address is the
hub's, not the agent's ever-changing port). OSC messages go to the hub's OSC API
(``HOST_INFO``'s ``OSC_IP``/``OSC_PORT``), which sets them through the hub.

``GET /`` the namespace, ``GET /hub/agent/a1/lr`` one node, ``GET /hub/agent/a1/lr?VALUE``
one attribute, ``GET /?HOST_INFO`` the server. Served on its own port (OSCQuery owns
``/``, which is the dashboard's on the dashboard's port). Choices, as the agent's
(:mod:`anamnesis.agents.net.oscquery`): write-only commands report their default
arguments as VALUE (strict clients reject ACCESS != 0 without one); CLIPMODE ``none``
(out-of-range values are refused, not clipped); no LISTEN yet (the dashboard's WebSocket
pushes changes; an OSCQuery client reads VALUEs when it needs them).

Values are the hub's knowledge: the parameters each agent last reported (its state at
adoption and every change since), else what the hub remembers asking for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import re
from typing import Any

from aiohttp import web

from anamnesis.agents.net.oscquery import ATTRIBUTES, UNITS, host_info
from anamnesis.agents.net.tasks import cancel_and_wait
from anamnesis.agents.protocol.oscmap import ACCESS_NONE, ACCESS_READWRITE, ACCESS_WRITE
from anamnesis.agents.protocol.txt import OSC_SERVICE, OSCQUERY_SERVICE
from anamnesis.hub.api.osc import ADDRESSES

log = logging.getLogger(__name__)

#: The hub's own commands (those of its OSC API's table, whose type tags they take):
#: address -> (default VALUE, description).
HUB_COMMANDS: dict[str, tuple[list[object], str]] = {
    "/hub/panic": ([], "fade every agent's output to silence"),
    "/hub/unpanic": ([], "bring every agent's output back"),
    "/hub/scene/save": ([""], "save a scene: every online agent's parameters and weights"),
    "/hub/scene/recall": ([""], "recall a saved scene"),
    "/hub/scene/interpolate": (["", "", 0.0], "blend scenes a and b at t in [0, 1]"),
    "/hub/route": (["", "", 0.0], "gain (linear) of the route from -> to (added if missing)"),
    "/hub/coupling": (["", "", 0.0], "kappa (0-1) of the weight coupling from ~> to (a 20 Hz "
                                     "blend added if missing)"),
}


def command_tags(address: str) -> str:
    """The OSC type tags of one of :data:`HUB_COMMANDS` (from the OSC API's table)."""
    return ADDRESSES[address][1]


_TYPE = {"float": "f", "int": "i", "bool": "i", "choice": "s"}


# ---------------------------------------------------------------------------
# Pure: the namespace from what the hub knows
# ---------------------------------------------------------------------------


def _value(kind: str, value: object) -> list[object]:
    values = value if isinstance(value, list) else [value]
    out: list[object] = []
    for v in values:
        if kind in ("int", "bool"):
            out.append(int(v) if isinstance(v, (int, float)) and math.isfinite(v) else 0)
        elif kind == "choice":
            out.append(str(v))
        else:
            out.append(float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None)
    return out


def param_node(path: str, spec: dict[str, Any], value: object) -> dict[str, object] | None:
    """The node of one agent parameter described by ``spec`` (a
    :func:`anamnesis.hub.fleet.specs.model_specs` entry); None for a kind OSC cannot say."""
    kind = spec.get("kind")
    if kind == "array":
        size = int(spec.get("size") or 0)
        if size < 1:
            return None
        tag, n, elem = "f" * size, size, "float"
    elif kind in _TYPE:
        tag, n, elem = _TYPE[kind], 1, kind
    else:
        return None
    rng: dict[str, object] = {}
    if kind == "choice":
        rng["VALS"] = list(spec.get("choices") or [])
    else:
        lo, hi = spec.get("min"), spec.get("max")
        if kind == "bool":
            lo, hi = 0, 1
        cast = int if elem in ("int", "bool") else float
        if lo is not None:
            rng["MIN"] = cast(lo)
        if hi is not None:
            rng["MAX"] = cast(hi)
    if value is None:
        value = spec.get("default")
    values = _value(elem, value)
    if len(values) != n:
        values = _value(elem, [spec.get("default") if kind != "array" else 0.0] * n)
    node: dict[str, object] = {
        "FULL_PATH": path, "TYPE": tag, "ACCESS": ACCESS_READWRITE, "VALUE": values,
        "RANGE": [rng] * n, "CLIPMODE": ["none"] * n,
        "DESCRIPTION": spec.get("description") or spec.get("name") or path}
    if spec.get("unit"):
        node["UNIT"] = [UNITS.get(spec["unit"], spec["unit"])] * n
    return node


def _command_node(address: str, scenes: list[str]) -> dict[str, object]:
    default, description = HUB_COMMANDS[address]
    tag = command_tags(address)
    node: dict[str, object] = {"FULL_PATH": address, "DESCRIPTION": description,
                               "ACCESS": ACCESS_WRITE if tag else ACCESS_NONE}
    if tag:
        node["TYPE"] = tag
        # An impulse (a button: /hub/panic) has no value: VALUE [null], for the clients
        # that want one on every writable node.
        node["VALUE"] = [None] if tag == "I" else list(default)
    if address == "/hub/scene/recall":
        node["RANGE"] = [{"VALS": list(scenes)}]
    return node


def _insert(root: dict[str, object], path: str, node: dict[str, object]) -> None:
    """Put ``node`` at ``path``, making the container nodes on the way."""
    here = root
    parts = path.strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        contents = here.setdefault("CONTENTS", {})
        assert isinstance(contents, dict)
        here = contents.setdefault(part, {
            "FULL_PATH": "/" + "/".join(parts[:i + 1]), "ACCESS": ACCESS_NONE,
            "CONTENTS": {}})
    contents = here.setdefault("CONTENTS", {})
    assert isinstance(contents, dict)
    contents[parts[-1]] = node


def namespace(name: str, agents: list[dict[str, Any]], scenes: list[str]) -> dict[str, object]:
    """The installation's OSCQuery tree: the hub's commands, and each adopted agent's
    parameters (``agents`` as :meth:`Hub.agents_json` gives them: ``specs``, ``params``,
    ``desired``) under ``/hub/agent/ID/``."""
    root: dict[str, object] = {"FULL_PATH": "/", "ACCESS": ACCESS_NONE,
                               "DESCRIPTION": f"anamnesis installation {name}", "CONTENTS": {}}
    for address in HUB_COMMANDS:
        _insert(root, address, _command_node(address, scenes))
    for agent in agents:
        if not agent.get("adopted"):
            continue
        known = {**(agent.get("desired") or {}), **(agent.get("params") or {})}
        base = f"/hub/agent/{agent['id']}"
        nodes = {}
        for pname, spec in sorted((agent.get("specs") or {}).items()):
            node = param_node(f"{base}/{pname}", spec, known.get(pname))
            if node is not None:
                nodes[pname] = node
            for alias in spec.get("aliases") or ():     # /lr of Unlearn's λ
                if node is not None and alias not in (agent.get("specs") or {}):
                    nodes[alias] = dict(node, FULL_PATH=f"{base}/{alias}",
                                        DESCRIPTION=f"alias of {base}/{pname}: "
                                                    f"{node['DESCRIPTION']}")
        _insert(root, base, {"FULL_PATH": base, "ACCESS": ACCESS_NONE, "CONTENTS": nodes,
                             "DESCRIPTION": f"agent {agent['id']} ({agent.get('model')}, "
                                            f"{agent.get('status')})"})
    return root


def find_node(root: dict[str, object], path: str) -> dict[str, object] | None:
    """The node at ``path`` in ``root`` (None: no such node)."""
    node: Any = root
    for part in [p for p in path.split("/") if p]:
        contents = node.get("CONTENTS") if isinstance(node, dict) else None
        if not isinstance(contents, dict) or part not in contents:
            return None
        node = contents[part]
    return node


# ---------------------------------------------------------------------------
# The HTTP service
# ---------------------------------------------------------------------------

_HUB = web.AppKey("hub", object)
_INFO = web.AppKey("info", dict)


async def _serve(request: web.Request) -> web.Response:
    hub: Any = request.app[_HUB]
    query = request.query_string
    if query == "HOST_INFO":
        return web.json_response(request.app[_INFO])
    root = namespace(hub.name, hub.agents_json(), sorted(hub.scenes))
    node = find_node(root, request.path)
    if node is None:
        raise web.HTTPNotFound(text=f"no OSC node at {request.path}")
    if not query:
        return web.json_response(node)
    if query not in ATTRIBUTES:
        raise web.HTTPBadRequest(text=f"unknown attribute {query!r}; one of "
                                      f"{', '.join(ATTRIBUTES)} or HOST_INFO")
    if query not in node or (query == "VALUE" and node.get("TYPE") == "I"):
        return web.Response(status=204)
    return web.json_response({query: node[query]})


def create_oscquery_app(hub: Any, *, osc_ip: str, osc_port: int) -> web.Application:
    """The OSCQuery app of ``hub``, whose OSC API listens at ``osc_ip:osc_port``."""
    app = web.Application()
    app[_HUB] = hub
    app[_INFO] = host_info(f"anamnesis hub {hub.name}", osc_ip=osc_ip, osc_port=osc_port,
                           ws_ip=None, ws_port=None)
    app[_INFO]["EXTENSIONS"]["LISTEN"] = False
    app.router.add_get("/{tail:.*}", _serve)
    return app


# ---------------------------------------------------------------------------
# zeroconf
# ---------------------------------------------------------------------------


class HubAnnouncer:
    """Registers the hub's OSCQuery (``_oscjson._tcp``) and OSC API (``_osc._udp``) on
    ``interface`` — only where they listen (a front bound to 127.0.0.1 is announced on
    127.0.0.1 only, never on a LAN it cannot be reached from)."""

    def __init__(self, *, name: str, interface: str, oscquery: tuple[str, int] | None,
                 osc: tuple[str, int] | None) -> None:
        self.name = name
        self.interface = interface
        self.services = {t: a[1] for t, a in ((OSCQUERY_SERVICE, oscquery), (OSC_SERVICE, osc))
                         if a is not None and _reachable(a[0], interface)}
        self._zc: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Register in the background (probing takes ~1.6 s; a failure is logged, and
        the hub plays on without being findable)."""
        if self.services and self._task is None:
            self._task = asyncio.create_task(self._register(), name="hub-announce")

    async def _register(self) -> None:
        from zeroconf import ServiceInfo
        from zeroconf.asyncio import AsyncZeroconf

        host = re.sub(r"[^A-Za-z0-9-]", "-", f"anamnesis-hub-{self.name}")
        instance = f"anamnesis hub {self.name}"
        try:
            self._zc = AsyncZeroconf(interfaces=[self.interface])
            infos = [ServiceInfo(t, f"{instance}.{t}", port=port,
                                 properties={"txtvers": "1", "inst": self.name},
                                 server=f"{host}.local.", parsed_addresses=[self.interface])
                     for t, port in self.services.items()]
            waiters = [await self._zc.async_register_service(i, allow_name_change=True)
                       for i in infos]
            for w in waiters:
                await w
            log.info("zeroconf: announced %s on %s (%s)", instance, self.interface,
                     ", ".join(f"{t.split('.')[0]} {p}" for t, p in self.services.items()))
        except Exception as exc:   # network trouble must not stop the hub
            log.warning("zeroconf: could not announce the hub on %s: %s", self.interface, exc)

    async def close(self) -> None:
        """Unregister (a goodbye the controllers hear) and close zeroconf."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._zc is not None:
            with contextlib.suppress(Exception):
                await self._zc.async_unregister_all_services()
            await self._zc.async_close()
            self._zc = None


def _reachable(bound: str, interface: str) -> bool:
    """A front bound to ``bound`` can be reached at ``interface``."""
    try:
        return bound == interface or ipaddress.ip_address(bound).is_unspecified
    except ValueError:
        return False


__all__ = ["HUB_COMMANDS", "HubAnnouncer", "command_tags", "create_oscquery_app", "find_node", "namespace", "param_node"]
