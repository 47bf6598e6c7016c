"""A page of another origin cannot write with the dashboard's cookie — in Chromium
(issue 14, item 7).

The dashboard's cookie is ``SameSite=Strict``, but a page on another port of the same
host (``http://127.0.0.1:OTHER``) is the same *site*, so Chromium sends the cookie with
its requests. The hub refuses a cookie-only write whose ``Origin`` is not its own (403).
Here Debian's Chromium opens the dashboard (the cookie is set), then a page served on
another port of 127.0.0.1 that tries to save a scene three ways (``fetch`` with the
credentials, a ``text/plain`` form post, a ``sendBeacon``); none lands. The dashboard's own
page saving a scene with the same cookie does (so the test can fail).
"""

from __future__ import annotations

import http.server
import threading

import pytest
from support.web import HubThread, launch_chromium, require_browser

CONFIG = """
[installation]
name = "csrf"

[[agent]]
id = "c1"
model = "autoregnn"
spawn = false
"""

ATTACK = """<!doctype html><html><body>
<form id="f" method="POST" action="{hub}/api/scenes" enctype="text/plain" target="sink">
  <input name='{{"name": "evil_form", "x": "' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
(async () => {{
  const body = JSON.stringify({{ name: "evil_fetch" }});
  const tried = [];
  try {{
    await fetch("{hub}/api/scenes", {{ method: "POST", credentials: "include", mode: "no-cors",
                                       headers: {{ "Content-Type": "text/plain" }}, body }});
    tried.push("fetch sent");
  }} catch (e) {{ tried.push("fetch failed: " + e); }}
  tried.push("beacon " + navigator.sendBeacon("{hub}/api/scenes",
                                              JSON.stringify({{ name: "evil_beacon" }})));
  document.getElementById("f").submit();
  tried.push("form sent");
  document.title = tried.join("; ");
}})();
</script></body></html>"""


@pytest.fixture
def hub(tmp_path):
    require_browser()
    hub = HubThread(tmp_path / "hub", CONFIG, name="csrf.toml").start()
    try:
        yield hub
    finally:
        hub.stop()


def _serve(page: str) -> tuple[http.server.HTTPServer, str]:
    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            raw = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, name="attacker-page", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def test_a_page_on_another_port_cannot_write_with_the_cookie(hub):
    from playwright.sync_api import sync_playwright

    server, attacker = _serve(ATTACK.format(hub=hub.base))
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"{hub.base}/?token={hub.token}")      # the cookie is set
                page.wait_for_selector('[data-testid="conn-status"][data-status="open"]',
                                       timeout=15_000)
                assert any(c["name"] == "anamnesis_token" for c in context.cookies())
                evil = context.new_page()
                evil.goto(attacker)
                evil.wait_for_function("document.title.includes('form sent')", timeout=15_000)
                evil.wait_for_timeout(1000)                     # let the beacon and form land
                refused = hub.hub.counts["foreign_origin"]
                # The dashboard's own page, the same cookie: its write lands.
                status = page.evaluate("""async () => (await fetch("/api/scenes", {
                    method: "POST", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({name: "mine"})})).status""")
            finally:
                browser.close()
    finally:
        server.shutdown()
    scenes = sorted(hub.hub.scenes)
    assert status == 201 and "mine" in scenes, (status, scenes)
    assert not any(name.startswith("evil") for name in scenes), scenes
    assert refused >= 3, f"the hub refused {refused} writes from the other page"
