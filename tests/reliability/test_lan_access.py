"""Nobody else on the LAN steers an agent or listens to its microphone (issue 14, item 5).

Three hosts in network namespaces the test creates (``support.netns``): the agent on
10.99.0.1, its hub on 10.99.0.2, a visitor's laptop on 10.99.0.3. The visitor sends what
was accepted before (``/lr 49.9``, ``/gain 12``, ``/ridge 0``, ``/snapshot dusk``,
``/panic``, ``/state``, ``/subscribe``) and asks for the streams and the microphone over
HTTP: nothing changes, not one byte comes back over UDP (an amplification factor of 0),
the HTTP asks are refused (403) and counted, and the OSCQuery tree stays readable. The
hub's host steers and listens as before. Then an agent started with ``--allow
10.99.0.3`` takes the visitor's ``/lr`` (the option works), but still not its mic
request (``--offer-mic`` would).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from support.agents import REPO
from support.netns import Lan, require_namespaces

from anamnesis.agents.net.access import HostFilter, parse_networks

OSC_PORT, HTTP_PORT = 9000, 9001

#: Run in a host: send OSC messages (JSON list of [address, args]) to the agent and
#: print what came back within the wait, and how many bytes.
OSC_PROBE = """
import json, socket, sys, time
from anamnesis.agents.protocol.oscmap import build_message, parse_packet
host, port, messages, wait = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
for address, args in messages:
    data = build_message(address, args)
    sent += len(data)
    s.sendto(data, (host, port))
    time.sleep(0.02)
s.settimeout(0.1)
got, nbytes, end = [], 0, time.monotonic() + wait
while time.monotonic() < end:
    try:
        data = s.recv(65536)
    except socket.timeout:
        continue
    nbytes += len(data)
    got.extend(parse_packet(data))
print(json.dumps({"sent": sent, "received": nbytes, "messages": got}))
"""

#: Run in a host: GET each URL, print the statuses.
HTTP_PROBE = """
import json, sys, urllib.request, urllib.error
out = []
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            out.append(r.status)
    except urllib.error.HTTPError as exc:
        out.append(exc.code)
print(json.dumps(out))
"""


def test_the_filter_allows_the_hub_loopback_and_allowed_networks():
    access = HostFilter("10.0.0.2", ["10.1.0.0/24", "192.168.5.7"])
    for host in ["10.0.0.2", "127.0.0.1", "127.0.0.9", "::1", "10.1.0.200", "192.168.5.7",
                 "::ffff:10.0.0.2"]:
        assert access.allows(host), host
    for host in ["10.0.0.3", "10.1.1.1", "192.168.5.8", "fe80::1", "", "localhost", "x"]:
        assert not access.allows(host), host
    assert access.may_take("mic", "10.0.0.2") and access.may_take("out", "10.1.0.9")
    assert not access.may_take("mic", "10.1.0.9")
    assert HostFilter("10.0.0.2", ["10.1.0.0/24"], offer_mic=True).may_take("mic", "10.1.0.9")
    with pytest.raises(ValueError, match="--allow takes an IP address or a network"):
        parse_networks(["10.0.0.0/33"])


async def _run(lan: Lan, host: int, *argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *lan.exec(host), *argv, cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def _osc(lan: Lan, host: int, messages: list, wait: float = 1.5) -> dict:
    return json.loads(await _run(lan, host, sys.executable, "-c", OSC_PROBE, lan.address(1),
                                 str(OSC_PORT), json.dumps(messages), str(wait)))


async def _http(lan: Lan, host: int, *paths: str) -> list[int]:
    urls = [f"http://{lan.address(1)}:{HTTP_PORT}{p}" for p in paths]
    return json.loads(await _run(lan, host, sys.executable, "-c", HTTP_PROBE, *urls))


async def _agent(lan: Lan, state, *extra: str):
    proc = await asyncio.create_subprocess_exec(
        *lan.exec(1), sys.executable, "-m", "anamnesis.agents", "--id", "v1", "--preset",
        "sine200", "--audio", "null", "--interface", lan.address(1), "--hub", lan.address(2),
        "--no-announce", "--fresh", "--state-dir", str(state), "--osc-port", str(OSC_PORT),
        "--http-port", str(HTTP_PORT), "--autosave-s", "3600", *extra, cwd=REPO,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    log = []
    while True:   # ready once its control services are up
        line = (await asyncio.wait_for(proc.stderr.readline(), 90)).decode()
        assert line, "".join(log)
        log.append(line)
        if "control: osc" in line:
            break
    return proc, log


async def _stop(proc, log: list[str]) -> str:
    proc.terminate()
    _, rest = await asyncio.wait_for(proc.communicate(), 30)
    return "".join(log) + rest.decode()


@pytest.mark.slow
async def test_a_visitor_on_the_lan_neither_steers_nor_listens(tmp_path):
    require_namespaces()
    with Lan(hosts=3) as lan:
        proc, log = await _agent(lan, tmp_path / "a")
        try:
            state = lambda said: dict((a, v) for a, v in said["messages"])  # noqa: E731
            before = state(await _osc(lan, 2, [["/state", []]]))
            assert before["/panicked"] == [0] and "/lr" in before, before
            hostile = [["/lr", [49.9]], ["/gain", [12.0]], ["/ridge", [0.0]],
                       ["/snapshot", ["dusk"]], ["/panic", []], ["/state", []],
                       ["/weights", []], ["/subscribe", [5000]], ["/ping", []]]
            visitor = await _osc(lan, 3, hostile)
            assert visitor["received"] == 0 and visitor["sent"] > 0, visitor  # factor 0
            statuses = await _http(lan, 3, "/streams", "/streams/mic.sdp?port=5000",
                                   "/streams/out.sdp?port=5000", "/lr", "/?HOST_INFO")
            assert statuses == [403, 403, 403, 200, 200], statuses   # the tree stays open
            after = state(await _osc(lan, 2, [["/state", []]]))
            assert after == before, (before, after)                  # nothing changed
            hub = await _osc(lan, 2, [["/lr", [0.3]], ["/lr", []]])
            assert ["/lr", [pytest.approx(0.3)]] in hub["messages"], hub
            assert await _http(lan, 2, "/streams/mic.sdp?port=5000") == [200]
            streams = json.loads(await _run(
                lan, 2, sys.executable, "-c", "import urllib.request,sys;"
                "print(urllib.request.urlopen(sys.argv[1]).read().decode())",
                f"http://{lan.address(1)}:{HTTP_PORT}/streams"))
            assert streams["refused_hosts"] == 3, streams
            assert [le["host"] for le in streams["leases"]] == [lan.address(2)]
        finally:
            said = await _stop(proc, log)
        assert "may not steer this agent" in said and said.count("refused") <= 4, said[-3000:]

        proc, log = await _agent(lan, tmp_path / "b", "--allow", lan.address(3))
        try:
            visitor = await _osc(lan, 3, [["/lr", [0.7]], ["/lr", []]])
            assert ["/lr", [pytest.approx(0.7)]] in visitor["messages"], visitor
            assert await _http(lan, 3, "/streams/out.sdp?port=5000",
                               "/streams/mic.sdp?port=5000") == [200, 403]
        finally:
            await _stop(proc, log)
