"""A visitor's laptop on the gallery's LAN cannot take an agent's place (issue 14, item 4).

Three hosts in network namespaces the test creates (:mod:`support.netns`): the hub
(``anamnesis hub``, the installation key) on 10.99.0.1, the signed agents on 10.99.0.2,
a visitor on 10.99.0.3 with nothing but the LAN. The visitor listens to mDNS and keeps
what agent a1 announces; a1 restarts on other ports (a newer signed record); then the
visitor replays the captured record, sends 1,000 fake unsigned agents and an unsigned
impostor a1 at its own address. The hub keeps a1 where it is, lists at most
``MAX_PENDING_PER_HOST`` of the visitor's agents, counts the replay, and adopts a newly
started signed agent within 5 s. With a1 and a2 down and the hub restarted, the
impostors announce again: neither is adopted.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from support.agents import REPO
from support.lanhosts import Hosts
from support.netns import Lan, require_namespaces

from anamnesis.agents.protocol.key import generate_key
from anamnesis.hub.fleet.discovery import MAX_PENDING_PER_HOST

HUB, AGENTS, VISITOR = 1, 2, 3
HTTP = 8570
FAKES = 1000

CONFIG = """
[installation]
name = "gallery"
mode = "deployed"

[[agent]]
id = "a1"
model = "autoregnn"

[[agent]]
id = "a2"
model = "autoregnn"
"""

#: Run on the visitor's host: ``capture ME FILE NEEDLE`` keeps (hex, one a line) every
#: mDNS packet containing NEEDLE until terminated; ``replay ME FILE`` sends them again;
#: ``flood ME N`` announces N fake unsigned agents; ``impostor ME ID,ID`` announces
#: unsigned agents of those ids at the visitor's address (three times, 0.3 s apart).
VISITOR_SCRIPT = """
import signal, socket, sys, time
from zeroconf import DNSOutgoing, ServiceInfo
from zeroconf.const import _FLAGS_AA, _FLAGS_QR_RESPONSE
from anamnesis.agents.protocol.txt import ANAMNESIS_SERVICE, PROTOCOL_VERSION, build_txt

mode, me = sys.argv[1], sys.argv[2]
GROUP = ("224.0.0.251", 5353)
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
out.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)

def announce(agent_id):
    txt = build_txt({"id": agent_id, "model": "autoregnn", "v": PROTOCOL_VERSION,
                     "osc": 9000, "http": 9001, "rtp": 0, "inst": "gallery", "addr": me,
                     "ts": int(time.time())}, None)
    name = f"anamnesis {agent_id} (gallery).{ANAMNESIS_SERVICE}"
    info = ServiceInfo(ANAMNESIS_SERVICE, name, port=9000, properties=txt,
                       server=f"{agent_id}-visitor.local.", parsed_addresses=[me])
    packet = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
    for record in (info.dns_pointer(), info.dns_service(), info.dns_text(),
                   *info.dns_addresses()):
        packet.add_answer_at_time(record, 0)
    for data in packet.packets():
        out.sendto(data, GROUP)

if mode == "capture":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ear = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ear.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ear.bind(("", 5353))
    ear.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                   socket.inet_aton(GROUP[0]) + socket.inet_aton(me))
    needle = sys.argv[4].encode()
    with open(sys.argv[3], "w") as kept:
        print("listening", flush=True)
        while True:
            data = ear.recv(9000)
            if needle in data:
                kept.write(data.hex() + "\\n")
                kept.flush()
elif mode == "replay":
    for line in open(sys.argv[3]):
        out.sendto(bytes.fromhex(line.strip()), GROUP)
elif mode == "flood":
    for i in range(int(sys.argv[3])):
        announce(f"fake{i}")
        if i % 50 == 49:
            time.sleep(0.01)
elif mode == "impostor":
    for _ in range(3):
        for agent_id in sys.argv[3].split(","):
            announce(agent_id)
        time.sleep(0.3)
"""


async def _visitor(lan: Lan, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *lan.exec(VISITOR), sys.executable, "-c", VISITOR_SCRIPT, args[0],
        lan.address(VISITOR), *args[1:], cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]


@pytest.mark.slow
async def test_a_visitor_replays_floods_and_impersonates_in_vain(tmp_path):
    require_namespaces()
    key_file = tmp_path / "installation.key"
    generate_key(key_file)
    (tmp_path / "gallery.toml").write_text(CONFIG)
    with Lan(hosts=3) as lan:
        hosts = Hosts(lan, tmp_path, hub=HUB, http_port=HTTP)

        async def start_hub():
            hub = await hosts.run(
                HUB, "hub", str(tmp_path / "gallery.toml"), "--interface", lan.address(HUB),
                "--http", f"{lan.address(HUB)}:{HTTP}", "--osc", f"{lan.address(HUB)}:8571",
                "--key-file", str(key_file), "--state-dir", str(tmp_path / "hub"),
                "--no-spawn", module="anamnesis.hub.cli")
            line = (await asyncio.wait_for(hub.proc.stdout.readline(), 120)).decode()
            assert "token=" in line, (line, hub.log)
            hosts.token = line.strip().rsplit("token=", 1)[1]
            return hub

        def agent(agent_id: str, osc_port: int):
            return hosts.run(AGENTS, "--id", agent_id, "--preset", "sine200", "--audio", "null",
                             "--interface", lan.address(AGENTS), "--hub", lan.address(HUB),
                             "--installation", "gallery", "--key-file", str(key_file),
                             "--osc-port", str(osc_port), "--http-port", str(osc_port + 1),
                             "--state-dir", str(tmp_path / agent_id), "--fresh")

        def at(agent_id: str, osc_port: int):
            async def check():
                a = (await hosts.agents()).get(agent_id, {})
                return a if a.get("status") == "online" and a["osc_port"] == osc_port else None
            return check

        async def discovery() -> dict:
            return (await hosts.api("/api/health"))["discovery"]

        capture = None
        try:
            hub = await start_hub()
            captured = tmp_path / "captured.hex"
            capture = await asyncio.create_subprocess_exec(
                *lan.exec(VISITOR), sys.executable, "-c", VISITOR_SCRIPT, "capture",
                lan.address(VISITOR), str(captured), "id=a1", cwd=REPO,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            assert (await asyncio.wait_for(capture.stdout.readline(), 60)) == b"listening\n"
            a1 = await agent("a1", 9100)
            await a1.ready()
            await hosts.until(at("a1", 9100), "a1 online at 9100", 30)
            await hosts.until(lambda: asyncio.sleep(0, captured.stat().st_size > 0),
                              "the visitor heard a1's record", 10)
            capture.terminate()
            await capture.wait()
            await a1.stop()
            a1 = await agent("a1", 9200)                  # a newer signed record
            await a1.ready()
            await hosts.until(at("a1", 9200), "a1 back online at 9200", 30)

            await _visitor(lan, "replay", str(captured))
            await _visitor(lan, "flood", str(FAKES))
            await _visitor(lan, "impostor", "a1")
            counts = await hosts.until(
                lambda: _when(discovery(), lambda d: d.get("refused_replay", 0) >= 1),
                "the replay counted", 15)
            agents = await hosts.agents()
            assert agents["a1"]["osc_port"] == 9200 and agents["a1"]["status"] == "online"
            assert agents["a1"]["host"] == lan.address(AGENTS), agents["a1"]
            theirs = [a for a in agents.values() if a["host"] == lan.address(VISITOR)]
            assert len(theirs) <= MAX_PENDING_PER_HOST, len(theirs)
            assert not any(a["adopted"] for a in theirs), theirs

            a2 = await agent("a2", 9300)                 # a signed agent after the flood
            await a2.ready()
            ready = time.monotonic()
            await hosts.until(at("a2", 9300), "a2 adopted after the flood", 30)
            took = time.monotonic() - ready
            print(f"\nvisitor: replay refused ({counts['refused_replay']}), {FAKES} fakes "
                  f"sent, {len(theirs)} of theirs listed (pending), a2 adopted {took:.2f} s "
                  f"after it was ready; discovery {counts}")
            assert took <= 5.0, took

            # a1 and a2 down, the hub restarted: the impostors are not adopted.
            await asyncio.gather(a1.stop(), a2.stop())
            await hub.stop()
            hub = await start_hub()
            await _visitor(lan, "impostor", "a1,a2")
            heard = await hosts.until(
                lambda: _when(hosts.agents(), lambda a: {"a1", "a2"} <= set(a)),
                "the impostors heard after the restart", 15)
            for agent_id in ("a1", "a2"):
                assert heard[agent_id]["host"] == lan.address(VISITOR)
                assert heard[agent_id]["status"] == "pending", heard[agent_id]
                assert not heard[agent_id]["signed"], heard[agent_id]
        finally:
            if capture is not None and capture.returncode is None:
                capture.kill()
                await capture.wait()
            await hosts.close()


async def _when(awaitable, test):
    """The awaited value if ``test`` holds for it, else None (for :meth:`Hosts.until`)."""
    value = await awaitable
    return value if test(value) else None
