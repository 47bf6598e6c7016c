"""OSCQuery checks shared by the agent's and the hub's tests: a node validated against the
proposal's field list, and python-oscquery (PyPI) as an independent client on 127.0.0.1."""

from __future__ import annotations

import time

from pythonoscquery.osc_query_browser import OSCQueryListener
from pythonoscquery.osc_query_client import OSCQueryClient
from zeroconf import ServiceBrowser, Zeroconf

LOOPBACK = "127.0.0.1"

NODE_FIELDS = {"FULL_PATH", "CONTENTS", "TYPE", "VALUE", "RANGE", "ACCESS", "DESCRIPTION",
               "UNIT", "CLIPMODE"}
TYPE_CHARS = set("ifhdsbTFNI")
CLIPMODES = {"none", "low", "high", "both"}


def validate_node(node: dict, path: str) -> int:
    """Check one node (and its children) against the OSCQuery field list; count the nodes."""
    assert set(node) <= NODE_FIELDS, set(node) - NODE_FIELDS
    assert node["FULL_PATH"] == path
    assert isinstance(node.get("DESCRIPTION", ""), str)
    assert node["ACCESS"] in (0, 1, 2, 3)
    count = 1
    if "CONTENTS" in node:
        assert "TYPE" not in node and "VALUE" not in node
        for key, child in node["CONTENTS"].items():
            child_path = (path.rstrip("/") + "/" + key)
            count += validate_node(child, child_path)
        return count
    type_tag = node.get("TYPE", "")
    assert set(type_tag) <= TYPE_CHARS, type_tag
    n = len(type_tag)
    if node["ACCESS"] == 0:
        assert "VALUE" not in node
    if "VALUE" in node:
        assert isinstance(node["VALUE"], list) and len(node["VALUE"]) == n
        for tag, value in zip(type_tag, node["VALUE"], strict=True):
            if tag == "I":                      # an impulse: no value
                assert value is None, (path, value)
                continue
            expected = {"i": int, "h": int, "f": float, "d": float, "s": str}[tag]
            assert isinstance(value, expected) and not isinstance(value, bool), (path, tag, value)
    for key in ("RANGE", "UNIT", "CLIPMODE"):
        if key in node:
            assert isinstance(node[key], list) and len(node[key]) == n, (path, key)
    for i, entry in enumerate(node.get("RANGE", [])):
        assert set(entry) <= {"MIN", "MAX", "VALS"}, entry
        if "VALUE" in node and node["ACCESS"] & 1:
            value = node["VALUE"][i]
            if "MIN" in entry:
                assert value >= entry["MIN"], (path, value, entry)
            if "MAX" in entry:
                assert value <= entry["MAX"], (path, value, entry)
            if "VALS" in entry:
                assert value in entry["VALS"], (path, value, entry)
    for mode in node.get("CLIPMODE", []):
        assert mode in CLIPMODES
    for unit in node.get("UNIT", []):
        assert isinstance(unit, str) and unit
    return count


def browse_with_python_oscquery(name: str, timeout: float, node: str = "/lr") -> dict:
    """python-oscquery as an independent client: zeroconf discovery and HTTP, on loopback.

    Its ``OSCQueryBrowser`` opens ``Zeroconf()`` on every interface, which tests must
    never do (TESTING.md), so this uses its listener and client with a Zeroconf
    bound to 127.0.0.1 — the same classes the browser wires together.
    """
    zc = Zeroconf(interfaces=[LOOPBACK])
    try:
        listener = OSCQueryListener()
        browser = ServiceBrowser(zc, ["_oscjson._tcp.local.", "_osc._udp.local."], listener)
        started = time.monotonic()
        service = None
        while time.monotonic() - started < timeout:
            service = next((s for n, s in listener.oscjson_services.items()
                            if s is not None and name in n), None)
            osc_seen = any(name in n for n in listener.osc_services)
            if service is not None and osc_seen:
                break
            time.sleep(0.05)
        found_after = time.monotonic() - started
        assert service is not None, f"python-oscquery did not find {name!r} in {timeout} s"
        client = OSCQueryClient(service)
        host_info = client.get_host_info()
        root = client.query_node("/")
        lr = client.query_node(node)
        browser.cancel()
        return {"found_after": found_after, "host_info": host_info, "root": root, "lr": lr,
                "osc_services": list(listener.osc_services)}
    finally:
        zc.close()
