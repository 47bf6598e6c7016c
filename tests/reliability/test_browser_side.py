"""What a page in a visitor's browser cannot do to the hub (issue 14, item 7).

* A page of another origin — another *port* of the same host included, which
  SameSite=Strict does not separate — cannot write with the dashboard's cookie (403).
* A request whose ``Host`` is a name the hub is not (DNS rebinding: a page's domain
  re-pointed at 127.0.0.1) is refused, reads included (421).
* An address that presents ten wrong tokens in a row waits (429, Retry-After), the
  right token included, doubling with every further wrong one (at most five minutes).

A real hub on 127.0.0.1; the requests carry the headers a browser sends.
"""

from __future__ import annotations

import socket

import aiohttp
from support.hubs import running_hub

from anamnesis.hub.api.access import MAX_WAIT_S, MAX_WRONG_TOKENS, WRONG_TOKEN_WAIT_S, TokenGuard


async def _status(http: aiohttp.ClientSession, method: str, url: str, **kwargs) -> int:
    async with http.request(method, url, allow_redirects=False, **kwargs) as r:
        return r.status


async def test_the_cookie_writes_only_from_the_dashboards_own_origin(tmp_path):
    async with running_hub(tmp_path / "hub") as (hub, base):
        cookie = {"Cookie": f"anamnesis_token={hub.token}"}
        async with aiohttp.ClientSession() as http:
            scene = {"json": {"name": "dusk"}}
            # Another port of the same host (the finding: http://127.0.0.1:9999).
            for origin in ("http://127.0.0.1:9999", "http://evil.example", "null"):
                assert await _status(http, "POST", base + "/api/scenes",
                                     headers={**cookie, "Origin": origin}, **scene) == 403
            assert await _status(http, "POST", base + "/api/panic",
                                 headers={**cookie, "Sec-Fetch-Site": "same-site"}) == 403
            assert hub.scenes == {} and hub.counts["foreign_origin"] == 4
            # The dashboard's own page, and a client with the bearer token, write.
            assert await _status(http, "POST", base + "/api/scenes",
                                 headers={**cookie, "Origin": base}, **scene) == 201
            assert await _status(http, "POST", base + "/api/panic", headers={
                "Authorization": f"Bearer {hub.token}", "Origin": "http://127.0.0.1:9999"}) == 200
            assert list(hub.scenes) == ["dusk"]


async def test_a_foreign_host_header_is_refused_reads_included(tmp_path):
    async with running_hub(tmp_path / "hub") as (hub, base):
        port = base.rsplit(":", 1)[1]
        async with aiohttp.ClientSession() as http:
            for host in ("rebind.evil.example", f"rebind.evil.example:{port}", "localhost.evil"):
                for path in ("/api/agents", "/api/health", "/"):
                    assert await _status(http, "GET", base + path,
                                         headers={"Host": host}) == 421, (host, path)
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]", "192.168.1.20",
                         f"{socket.gethostname()}:{port}"):
                assert await _status(http, "GET", base + "/api/health",
                                     headers={"Host": host}) == 200, host
        assert hub.counts["foreign_host"] == 9


async def test_wrong_tokens_in_a_row_make_the_address_wait(tmp_path):
    async with running_hub(tmp_path / "hub") as (hub, base):
        async with aiohttp.ClientSession() as http:
            for n in range(MAX_WRONG_TOKENS):
                wrong = {"Authorization": f"Bearer wrong{n}"}
                assert await _status(http, "POST", base + "/api/panic", headers=wrong) == 401
            right = {"Authorization": f"Bearer {hub.token}"}
            async with http.post(base + "/api/panic", headers=right) as r:
                assert r.status == 429
                assert 0 < int(r.headers["Retry-After"]) <= WRONG_TOKEN_WAIT_S
                assert "too many wrong tokens" in (await r.json())["error"]
            # ?token= on the dashboard's address counts and waits the same.
            assert await _status(http, "GET", base + f"/?token={hub.token}") == 429
            # Reads stay open.
            assert await _status(http, "GET", base + "/api/health") == 200
        assert hub.counts["unauthorized"] == MAX_WRONG_TOKENS


def test_the_guard_doubles_the_wait_and_forgets_on_the_right_token():
    now = [1000.0]
    guard = TokenGuard(clock=lambda: now[0])
    for _ in range(MAX_WRONG_TOKENS - 1):
        guard.wrong("10.0.0.9")
    assert guard.wait_s("10.0.0.9") == 0.0
    guard.wrong("10.0.0.9")
    assert guard.wait_s("10.0.0.9") == WRONG_TOKEN_WAIT_S
    now[0] += WRONG_TOKEN_WAIT_S
    assert guard.wait_s("10.0.0.9") == 0.0
    guard.wrong("10.0.0.9")                          # one more: twice as long
    assert guard.wait_s("10.0.0.9") == 2 * WRONG_TOKEN_WAIT_S
    for _ in range(30):
        guard.wrong("10.0.0.9")
    assert guard.wait_s("10.0.0.9") == MAX_WAIT_S     # at most five minutes
    assert guard.wait_s("10.0.0.8") == 0.0           # another address is not affected
    guard.right("10.0.0.9")
    assert guard.wait_s("10.0.0.9") == 0.0
