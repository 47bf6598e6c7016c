"""Issue 15's dashboard dead ends, one browser test each, as an artist meets them:
Debian's Chromium driven by Playwright against a real hub of a deployed installation of
eight agents (a ring, a room) and real agent processes added on the LAN by hand (and
adopted), all on 127.0.0.1.

1. *Make ring* with a hand-added agent, then drag speakers, mics and the listener: every
   drag lands (it used to fail with ``move: [[ring]] #3: agents names unknown agent``).
2. *Forget* an agent gone for good from its card: both open browsers lose its card, its
   routes go, the event log says so.
3. On a phone the routing matrix (nine agents) scrolls sideways and says so: a fade over
   the cut edge and "scroll →", gone once scrolled to the end; row names stay in view.
4. Parameters read in words with their units; the OSC name (and alias) in small print.
5. The floor plan has a legend drawn in the plan's own shapes and colours.

The eight configured agents never run (a deployed hub waits for them; the dashboard
shows them through the ring's edges and the floor plan), which keeps the machine free
for the browser; only the hand-added agents are processes.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from support.web import HubThread, launch_chromium, require_browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "out" / "test-artifacts"
NAME = "deadends"
PLACED = tuple(f"de{i}" for i in range(1, 9))
HAND = "dehand"          # an Unlearn agent added by hand (not in the config)
#: Seconds an agent process may take to start, be discovered or be seen gone (a guard
#: for a loaded 2-core machine, not a speed requirement).
AGENT_GUARD_S = 60.0
#: How close (m) a dragged item must land to where the pointer let go: the plan is
#: ~70 px/m at this viewport, so a pixel is ~0.015 m.
DRAG_TOLERANCE_M = 0.1


def _agents() -> str:
    out = []
    for i, agent in enumerate(PLACED):
        x = 1.0 + (i % 4) * 2.0
        y = 1.5 if i < 4 else 4.5
        out.append(f'[[agent]]\nid = "{agent}"\nmodel = "autoregnn"\n'
                   f"speaker = [{x}, {y}, 1.7]\nmic = [{x + 0.4}, {y}, 1.5]\n")
    return "\n".join(out)


CONFIG = f"""
[installation]
name = "{NAME}"
mode = "deployed"

[room]
size = [8.0, 6.0, 3.0]
rt60 = 0.3
listener = [4.0, 3.0, 1.6]

{_agents()}
[[ring]]
name = "round"
agents = {json.dumps(list(PLACED))}
gain = 0.3
delay_ms = 5.0
"""


def tid(name: str) -> str:
    return f'[data-testid="{name}"]'


def start_hand_agent(hub: HubThread, state_dir: Path, agent_id: str, model: str,
                     *extra: str):
    """An agent process the config does not list, adopted by hand (the REST call the
    card's Adopt button makes) once the hub has heard it: (process, when online)."""
    from support.controlplane import AgentProcess

    async def start():
        return await AgentProcess.start(state_dir, agent_id=agent_id, model=model,
                                        extra=("--installation", NAME, *extra))

    agent = hub.call(start(), timeout=AGENT_GUARD_S + 30.0)
    try:
        hub.wait(lambda: hub.hub.registry.get(agent_id) is not None, AGENT_GUARD_S,
                 f"{agent_id} discovered")
        status, answer = api(hub, "POST", f"/api/agents/{agent_id}/adopt")
        assert status == 200, answer
        hub.wait(lambda: online(hub, agent_id), AGENT_GUARD_S, f"{agent_id} online, adopted")
    except BaseException:
        stop_agent(hub, agent)
        raise
    return agent


def stop_agent(hub: HubThread, agent) -> None:
    if agent.proc.returncode is None:
        assert hub.call(agent.stop(), timeout=30.0) == 0


def online(hub: HubThread, agent_id: str) -> bool:
    entry = hub.hub.registry.get(agent_id)
    return entry is not None and entry.online and entry.adopted


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    require_browser()
    state = tmp_path_factory.mktemp("deadends")
    hub = HubThread(state / "hub", CONFIG, name="deadends.toml")
    hand = None
    try:
        hub.start()
        hand = start_hand_agent(hub, state / HAND, HAND, "unlearn", "--preset", "unlearn3")
        yield hub
    finally:
        try:
            if hand is not None:
                stop_agent(hub, hand)
        finally:
            hub.stop()


@pytest.fixture(scope="module")
def browser(installation):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        try:
            yield chromium
        finally:
            chromium.close()


def open_dashboard(browser, hub: HubThread, **context_args):
    """A new browser context with the dashboard open, connected, the hand-added agent's
    card online and the floor plan drawn."""
    context = browser.new_context(**context_args)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{hub.base}/?token={hub.token}")
    page.wait_for_selector(tid("conn-status") + '[data-status="open"]', timeout=15_000)
    page.wait_for_selector(tid(f"status-{HAND}") + '[data-status="online"]', timeout=15_000)
    page.wait_for_selector(tid("speaker-de1"), timeout=10_000)
    page.errors = errors   # type: ignore[attr-defined]
    return context, page


@pytest.fixture(scope="module")
def dashboard(browser, installation):
    context, page = open_dashboard(browser, installation, viewport={"width": 1400, "height": 1000})
    yield page
    assert page.errors == [], page.errors
    context.close()


def api(hub: HubThread, method: str, path: str, body: object = None) -> tuple[int, object]:
    """One REST call with the hub's token: (status, JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(hub.base + path, data=data, method=method, headers={
        "Authorization": f"Bearer {hub.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def drag(page, testid: str, dx_m: float, dy_m: float) -> None:
    """Drag the plan's item ``testid`` by (dx, dy) metres with the mouse (the plan's y axis
    points up: screen y inverted), in small steps as a hand would."""
    item = page.locator(tid(testid))
    item.scroll_into_view_if_needed()
    per_metre = page.evaluate(
        f"() => document.querySelector('{tid('room-plan')}').getScreenCTM().a")
    box = item.bounding_box()
    x0, y0 = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + dx_m * per_metre, y0 - dy_m * per_metre, steps=8)
    page.mouse.up()


def position(hub: HubThread, what: str, agent: str | None) -> list[float]:
    layout = hub.hub.room_layout()
    at = layout["room"]["listener"] if what == "listener" else layout["agents"][agent][what]
    return list(at)


# ---------------------------------------------------------------------------


def test_make_ring_with_a_hand_added_agent_then_drag_speakers_mics_and_the_listener(
        dashboard, installation):
    page = dashboard
    for agent in ("de3", "de4", HAND):
        page.locator(tid(f"ring-pick-{agent}")).check()
    assert page.locator(tid("ring-order")).text_content() == f"de3 → de4 → {HAND} → de3"
    page.locator(tid("ring-name")).fill("hand")
    page.locator(tid("ring-add")).click()
    installation.wait(lambda: f"hand:{HAND}->de3" in installation.hub.routes, 10.0,
                      "the ring's edges in the hub")
    assert set(r for r in installation.hub.routes if r.startswith("hand:")) == {
        "hand:de3->de4", f"hand:de4->{HAND}", f"hand:{HAND}->de3"}
    assert "ring" not in page.locator(tid("routing-status")).text_content()

    status = page.locator(tid("room-status"))
    for testid, what, agent, (dx, dy) in (("speaker-de3", "speaker", "de3", (0.6, 0.5)),
                                           ("mic-de4", "mic", "de4", (-0.4, 0.8)),
                                           ("listener", "listener", None, (1.0, -0.5))):
        start = position(installation, what, agent)
        want = [start[0] + dx, start[1] + dy, start[2]]
        drag(page, testid, dx, dy)

        def landed(want=want, what=what, agent=agent):
            at = position(installation, what, agent)
            near = all(abs(a - b) < DRAG_TOLERANCE_M for a, b in zip(at, want, strict=True))
            return at if near else None

        at = installation.wait(landed, 10.0, f"{testid} moved to about {want}")
        assert at[2] == pytest.approx(start[2])           # a drag keeps the height
        assert status.text_content() == "", status.text_content()
        print(f"\n{testid}: {start} -> {at} (wanted {want})")
    # and the room itself, from its controls
    page.locator(tid("room-rt60")).fill("0.45")
    page.locator(tid("room-apply")).click()
    installation.wait(lambda: (installation.hub.get_room() or {}).get("rt60") == 0.45, 10.0,
                      "RT60 0.45 s")
    assert status.text_content() == "", status.text_content()
    assert page.errors == [], page.errors


def test_forget_an_offline_agent_from_its_card_in_two_browsers(browser, dashboard,
                                                               installation, tmp_path):
    page_a = dashboard
    context_b, page_b = open_dashboard(browser, installation,
                                       viewport={"width": 900, "height": 900})
    gone = "degone"
    agent = start_hand_agent(installation, tmp_path / gone, gone, "autoregnn")
    try:
        assert api(installation, "POST", "/api/routes",
                   {"from": gone, "to": "de1", "delay_ms": 5.0})[0] == 201
        for page in (page_a, page_b):
            page.wait_for_selector(tid(f"status-{gone}") + '[data-status="online"]',
                                   timeout=15_000)
            page.wait_for_selector(tid(f"ring-pick-{gone}"), timeout=5000)
            # while it plays there is nothing to forget (the hub would refuse)
            assert not page.locator(tid(f"forget-{gone}")).is_visible()
            assert not page.locator(tid(f"forget-{HAND}")).is_visible()
        stop_agent(installation, agent)
        for page in (page_a, page_b):
            page.wait_for_selector(tid(f"status-{gone}") + '[data-status="offline"]',
                                   timeout=int(AGENT_GUARD_S * 1000))
        forget = page_a.locator(tid(f"forget-{gone}"))
        assert forget.is_visible()
        assert forget.get_attribute("title") == (
            f"Forget {gone}: it is gone for good (the route or ring edge naming it goes too)")
        forget.click()
        for page in (page_a, page_b):
            page.wait_for_selector(tid(f"card-{gone}"), state="detached", timeout=10_000)
            page.wait_for_selector(tid(f"ring-pick-{gone}"), state="detached", timeout=5000)
        assert installation.hub.registry.get(gone) is None
        assert f"{gone}->de1" not in installation.hub.routes
        assert api(installation, "GET", f"/api/agents/{gone}")[0] == 404
        # the other browser's event log says what happened
        logged = page_b.locator(f'{tid("events")} li[data-kind="agent_forgotten"]').first
        logged.wait_for(timeout=5000)
        assert f"agent {gone} forgotten with its routes {gone}->de1" in logged.text_content()
        assert page_b.errors == [], page_b.errors
    finally:
        stop_agent(installation, agent)
        context_b.close()


def test_on_a_phone_the_routing_matrix_scrolls_sideways_and_says_so(browser, installation):
    context, page = open_dashboard(browser, installation, viewport={"width": 390, "height": 844},
                                   is_mobile=True, has_touch=True)
    try:
        wrap = page.locator(tid("route-matrix-wrap"))
        box = page.locator(tid("route-matrix-box"))
        hint = page.locator(tid("route-matrix-hint"))
        wrap.scroll_into_view_if_needed()
        heads = page.locator(f'{tid("route-matrix")} thead th')
        assert heads.count() >= 1 + len(PLACED) + 1          # the corner, de1..de8, dehand
        overflow = wrap.evaluate("el => el.scrollWidth - el.clientWidth")
        assert overflow > 50, overflow                      # nine agents do not fit a phone
        edge = wrap.bounding_box()
        assert heads.last.bounding_box()["x"] > edge["x"] + edge["width"]   # cut off

        page.wait_for_selector(tid("route-matrix-hint"), state="visible", timeout=5000)
        assert hint.text_content().startswith("scroll →")
        assert box.get_attribute("data-more") == "1"
        fade = box.evaluate("el => getComputedStyle(el, '::after').backgroundImage")
        assert "linear-gradient" in fade, fade
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-phone-matrix-cut.png"))

        wrap.evaluate("el => { el.scrollLeft = el.scrollWidth; }")     # as a swipe would
        page.wait_for_selector(tid("route-matrix-hint"), state="hidden", timeout=5000)
        assert box.get_attribute("data-more") == "0"
        assert box.evaluate("el => getComputedStyle(el, '::after').content") in ("none", "normal")
        last = heads.last.bounding_box()
        assert last["x"] + last["width"] <= edge["x"] + edge["width"] + 1     # now in view
        # the sending agent's name stayed at the left edge while the rest scrolled
        row_head = page.locator(f'{tid("route-matrix")} tbody th').first
        assert abs(row_head.bounding_box()["x"] - edge["x"]) <= 1.0
        assert row_head.text_content() == "de1"
        page.screenshot(path=str(ARTIFACTS / "dashboard-phone-matrix-scrolled.png"))

        wrap.evaluate("el => { el.scrollLeft = 0; }")
        page.wait_for_selector(tid("route-matrix-hint"), state="visible", timeout=5000)
        assert page.errors == [], page.errors
    finally:
        context.close()


def test_parameters_read_in_words_with_units_and_their_osc_names(dashboard):
    page = dashboard
    card = page.locator(tid(f"card-{HAND}"))
    lam = f"param-{HAND}-lambda"
    label = page.locator(tid(f"{lam}-label"))
    assert label.locator(".label-text").text_content() == "learning rate λ"
    assert label.locator(".osc-name").text_content() == "/lambda · /lr"
    row = card.locator("label.param", has=page.locator(tid(lam)))
    title = row.get_attribute("title")
    assert title.startswith("learning rate λ: angular frequency"), title
    assert title.endswith("(OSC /lambda, /lr; in rad/time unit)"), title
    page.wait_for_function(f"""() => document.querySelector('{tid(f"{lam}-value")}')
        .textContent.endsWith(' rad/time unit')""", timeout=10_000)
    delays = page.locator(tid(f"param-{HAND}-delays-value")).text_content()
    assert delays.startswith("mean ") and " samples of " in delays, delays
    # every control of the card: words (not the OSC name again), whole (not cut off),
    # with the OSC address beside it
    rows = page.evaluate(f"""() => [...document.querySelectorAll(
        '{tid(f"card-{HAND}")} .param .name')].map((el) => {{
            const text = el.querySelector('.label-text');
            return [text.textContent, el.querySelector('.osc-name').textContent,
                    text.scrollWidth - text.clientWidth, text.getBoundingClientRect().width];
        }})""")
    assert len(rows) >= 13, rows              # Unlearn's eleven, gain and mute
    for words, osc, cut, width in rows:
        assert words and osc.startswith("/") and cut <= 1 and width > 10, (words, osc, cut)
        assert words != osc.lstrip("/") or words in ("activation", "mute"), (words, osc)
    assert [r[0] for r in rows][0] == "learning rate λ"     # the learning rate first
    card.screenshot(path=str(ARTIFACTS / "dashboard-unlearn-card.png"))


def test_the_floor_plan_has_a_legend_in_the_plans_own_shapes(dashboard):
    page = dashboard
    legend = page.locator(tid("room-legend"))
    legend.scroll_into_view_if_needed()
    assert legend.is_visible()
    text = legend.text_content()
    for words in ("speaker", "microphone", "listener"):
        assert words in text, text
    keys = page.evaluate(f"""() => {{
        const fill = (el) => getComputedStyle(el).fill;
        const icons = [...document.querySelectorAll('{tid("room-legend")} svg > *')];
        const plan = (id) => document.querySelector(`[data-testid="${{id}}"]`);
        return {{icons: icons.map((el) => [el.tagName, el.getAttribute('class'), fill(el)]),
                plan: [["speaker", plan("speaker-de1")], ["mic", plan("mic-de1")],
                       ["listener", plan("listener")]]
                      .map(([c, el]) => [el.tagName, c, fill(el)])}};
    }}""")
    assert keys["icons"] == keys["plan"], keys
    assert len({f for _, _, f in keys["icons"]}) == 3          # three colours, told apart
