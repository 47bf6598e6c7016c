"""The dashboard (web/) in a real browser against a real hub: Debian's Chromium driven by
Playwright, a hub clocking three real agent processes in a simulated room (RTP, OSC and
zeroconf on 127.0.0.1), plus a fourth agent started without the key (pending).

One hub and one browser serve the whole module (a few seconds to start). Each test
does what a person would do — moves a slider, drags a weight, taps Panic — and checks
the effect where it lands: the agent's own OSCQuery value, the weights the agent reports,
the agents' output levels, the audio the AudioWorklet plays.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from pathlib import Path

import pytest
from support.web import HubThread, launch_chromium, require_browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "out" / "test-artifacts"
IDS = ("dash1", "dash2", "dash3")

# Agent ids unlikely to meet other tests' agents on the shared loopback zeroconf.
CONFIG = """
[installation]
name = "dashtest"
block = 256
mode = "simulated"
description = "Three agents in a small room; listen for the ring."

[room]
size = [8.0, 6.0, 3.0]
rt60 = 0.3
max_order = 3
listener = [4.0, 3.0, 1.6]

[[agent]]
id = "dash1"
model = "autoregnn"
params = { hidden_size = 4, lr = 0.2, ridge = 1e-4 }
speaker = [2.0, 4.5, 1.7]
mic = [2.4, 4.5, 1.5]
spawn = true
seed = 1

[[agent]]
id = "dash2"
model = "autoregnn"
params = { hidden_size = 4, lr = 0.3, ridge = 1e-4 }
speaker = [6.0, 4.5, 1.7]
mic = [5.6, 4.5, 1.5]
spawn = true
seed = 2

[[agent]]
id = "dash3"
model = "autoregnn"
params = { hidden_size = 4, lr = 0.25, ridge = 1e-4 }
speaker = [4.0, 1.5, 1.7]
mic = [4.4, 1.5, 1.5]
spawn = true
seed = 3

[[ring]]
name = "ring"
agents = ["dash1", "dash2", "dash3"]
gain = 0.5
delay_ms = 5.0
highpass_hz = 2.0
shape = "tanh"

[[source]]
name = "tone"
kind = "sine"
args = { freq = 220.0, amp = 0.2 }
targets = ["dash1"]
"""


def tid(name: str) -> str:
    return f'[data-testid="{name}"]'


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    require_browser()
    hub = HubThread(tmp_path_factory.mktemp("dash") / "hub", CONFIG, name="dashtest.toml")
    try:
        hub.start()
        hub.wait(lambda: all(a in hub.hub._resumed for a in IDS), 90.0,
                 "the three agents online with their parameters")
        yield hub
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
    """A new browser context (its own cookies) with the dashboard open and connected."""
    context = browser.new_context(**context_args)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{hub.base}/?token={hub.token}")     # sets the cookie, redirects to /
    assert page.url == f"{hub.base}/"
    page.wait_for_selector(tid("conn-status") + '[data-status="open"]', timeout=10_000)
    for agent in IDS:
        page.wait_for_selector(tid(f"status-{agent}") + '[data-status="online"]', timeout=10_000)
    page.errors = errors   # type: ignore[attr-defined]
    return context, page


@pytest.fixture(scope="module")
def dashboard(browser, installation):
    context, page = open_dashboard(browser, installation, viewport={"width": 1400, "height": 1000})
    yield page
    assert page.errors == [], page.errors
    context.close()


def oscquery_value(hub: HubThread, agent: str, name: str) -> float:
    """The agent's own OSCQuery VALUE of ``/name`` (HTTP on its http_port)."""
    port = hub.hub.registry.get(agent).http_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{name}?VALUE", timeout=2) as r:
        return float(json.load(r)["VALUE"][0])


#: How long a browser gesture may take to reach an agent here (s): it crosses the page, the
#: WebSocket, the hub and the agent's OSC queue, on a machine that may be loaded (an
#: overloaded hub sheds work; nothing here is a latency figure: bench_dashboard has those).
PATIENT_S = 20.0


def hub_weights(hub: HubThread, agent: str) -> list[float]:
    with urllib.request.urlopen(f"{hub.base}/api/agents/{agent}/weights", timeout=5) as r:
        return json.load(r)["weights"]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def click_slider_at(page, testid: str, fraction: float) -> None:
    """A click on the slider ``fraction`` of the way along (scrolled to the middle of the
    screen first: the sticky header must not be what is clicked)."""
    page.locator(tid(testid)).evaluate("el => el.scrollIntoView({block: 'center'})")
    box = page.locator(tid(testid)).bounding_box()
    page.mouse.click(box["x"] + fraction * box["width"], box["y"] + box["height"] / 2)


def intended_value(page, agent: str, name: str) -> float:
    """What the slider's position means, by the page's own scale (params.js)."""
    return page.evaluate("""async ([agent, name]) => {
        const m = await import("/params.js");
        const a = window.anamnesis.state.agents[agent];
        const spec = m.specsOf(a).find((s) => s.name === name);
        const el = document.querySelector(`[data-testid="param-${agent}-${name}"]`);
        return m.fromSlider(Number(el.value), spec);
    }""", [agent, name])


# ---------------------------------------------------------------------------


def test_three_cards_with_live_levels_scopes_and_a_screenshot(dashboard, installation):
    page = dashboard
    for agent in IDS:
        card = page.locator(tid(f"card-{agent}"))
        assert card.is_visible()
        assert page.locator(tid(f"model-{agent}")).text_content() == "autoregnn"
        # lr and ridge are log sliders, from the specs the hub sends.
        assert page.locator(tid(f"param-{agent}-lr")).get_attribute("data-scale") == "log"
        assert page.locator(tid(f"param-{agent}-ridge")).get_attribute("data-scale") == "log"
    # Telemetry reaches the meters and scope frames reach the canvases.
    page.wait_for_function("""ids => ids.every((id) => {
        const m = document.querySelector(`[data-testid="meter-${id}"]`);
        return Number(m.dataset.rms) > 1e-4 && window.anamnesis.scopes.has(id);
    })""", arg=list(IDS), timeout=10_000)
    page.wait_for_function("() => window.anamnesis.state.room && window.anamnesis.state.room.room",
                           timeout=5000)
    assert page.locator(tid("speaker-dash1")).is_visible()
    assert page.locator(tid("listener")).is_visible()
    time.sleep(1.0)     # a few more frames of scope and sparkline
    perf = page.evaluate("() => window.anamnesis.perf()")
    print(f"\nper frame (ms): render p50 {perf['render']['p50']:.2f} p99 {perf['render']['p99']:.2f}; "
          f"draw p50 {perf['draw']['p50']:.2f} p99 {perf['draw']['p99']:.2f} "
          f"({perf['messages']} messages, {perf['binary']} scope messages)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    # The README's picture (docs/dashboard.png) is the live demo's, taken by
    # scripts/dashboard_screenshot.py; this one is the test's own artefact.


def test_lr_log_slider_sets_the_agents_own_value(dashboard, installation):
    page = dashboard
    before = oscquery_value(installation, "dash1", "lr")
    click_slider_at(page, "param-dash1-lr", 0.3)
    want = intended_value(page, "dash1", "lr")
    assert abs(want - before) > 0.01, (want, before)
    got = wait_until(lambda: (v := oscquery_value(installation, "dash1", "lr")) != before and v,
                     5.0, "the agent's /lr to change")
    print(f"\nlr slider at 30 %: {want:.6g}; the agent's OSCQuery VALUE: {got:.6g}")
    assert got == pytest.approx(want, rel=1e-6)      # OSC carries float32
    # The card shows what the hub pushed back (the agent's /state), not its own guess.
    page.wait_for_function("""want => Math.abs(Number(document.querySelector(
        '[data-testid="param-dash1-lr"]').dataset.value) / want - 1) < 1e-6""", arg=want,
        timeout=3000)


def test_two_browsers_stay_in_sync(browser, dashboard, installation):
    page_a = dashboard
    context_b, page_b = open_dashboard(browser, installation, viewport={"width": 375, "height": 667})
    try:
        # Phone-sized: nothing wider than the screen.
        wide = page_b.evaluate("""() => [...document.querySelectorAll("body *")]
            .filter((el) => el.getBoundingClientRect().right > 376)
            .slice(0, 5).map((el) => el.tagName + "." + el.className + " " + el.dataset.testid)""")
        assert page_b.evaluate("() => document.documentElement.scrollWidth") <= 375 + 1, wide
        page_a.locator(tid("param-dash2-lr")).scroll_into_view_if_needed()
        latencies = []
        for fraction in (0.35, 0.5, 0.4, 0.55, 0.45):
            before = page_b.locator(tid("param-dash2-lr")).get_attribute("data-value")
            t0 = page_a.evaluate("() => Date.now()")
            click_slider_at(page_a, "param-dash2-lr", fraction)
            seen = page_b.wait_for_function("""before => {
                const v = document.querySelector('[data-testid="param-dash2-lr"]').dataset.value;
                return v !== before ? Date.now() : false;
            }""", arg=before, polling="raf", timeout=5000).json_value()
            want = intended_value(page_a, "dash2", "lr")
            got = float(page_b.locator(tid("param-dash2-lr")).get_attribute("data-value"))
            def b_shows(want=want):
                shown = page_b.locator(tid("param-dash2-lr")).get_attribute("data-value")
                return abs(float(shown) / want - 1) < 1e-6

            wait_until(b_shows, 3.0, f"browser B to show lr {want} (shows {got})")
            latencies.append(seen - t0)
        print(f"\nA's slider -> B's display: {', '.join(f'{x:.0f}' for x in latencies)} ms "
              f"(median {statistics.median(latencies):.0f} ms; goal 200 ms)")
        # Goal 200 ms; the bound allows for a loaded 2-core CI machine.
        assert statistics.median(latencies) <= 1000
        # A panic in A shows as "Unpanic" in B, and back.
        page_a.locator(tid("panic")).click()
        page_b.wait_for_selector(tid("panic") + '[data-panicked="1"]', timeout=3000)
        page_a.locator(tid("panic")).click()
        page_b.wait_for_selector(tid("panic") + '[data-panicked="0"]', timeout=3000)
        assert page_b.errors == [], page_b.errors
    finally:
        context_b.close()


def test_dragging_weights_writes_them_to_the_agent(dashboard, installation):
    page = dashboard
    agent = "dash2"
    # Freeze learning first (the learn checkbox), so the written weights stay put.
    learn = page.locator(tid(f"param-{agent}-learn"))
    learn.scroll_into_view_if_needed()
    if learn.is_checked():
        learn.click()
    wait_until(lambda: oscquery_value(installation, agent, "learn") == 0, PATIENT_S, "learn = 0")
    try:
        _drag_weights(page, installation, agent)
    finally:   # learning back on whatever happened: the next tests hear every agent
        if page.locator(tid(f"weights-{agent}")).is_visible():
            page.locator(tid(f"weights-toggle-{agent}")).click()
        if not learn.is_checked():
            learn.click()
        wait_until(lambda: oscquery_value(installation, agent, "learn") == 1, PATIENT_S,
                   "learn = 1")


def _drag_weights(page, installation, agent: str) -> None:
    """Draw on ``agent``'s weights panel; the agent's weights become what was drawn."""
    page.locator(tid(f"weights-toggle-{agent}")).click()
    canvas = page.locator(tid(f"weights-{agent}"))
    page.wait_for_function(f"""() => Number(document.querySelector('{tid(f"weights-{agent}")}')
                              .dataset.count) > 0""", timeout=5000)
    canvas.scroll_into_view_if_needed()
    time.sleep(0.4)    # a live push or two: the panel is watched
    n = int(canvas.get_attribute("data-count"))
    scale = float(canvas.get_attribute("data-range"))
    box = canvas.bounding_box()
    assert n == len(hub_weights(installation, agent))

    def x_of(i):
        return box["x"] + (i + 0.5) * box["width"] / n

    y_top = box["y"] + 0.1 * box["height"]      # 0.8 of the range, upwards
    y_low = box["y"] + 0.75 * box["height"]     # half the range, downwards
    page.mouse.move(x_of(0), y_top)
    page.mouse.down()
    page.mouse.move(x_of(3), y_top, steps=4)
    page.mouse.move(x_of(5), y_low, steps=3)
    page.mouse.up()
    up, down = 0.8 * scale, -0.5 * scale

    def written():
        w = hub_weights(installation, agent)
        return w if abs(w[0] - up) < 1e-3 * scale and abs(w[5] - down) < 1e-3 * scale else None

    try:
        weights = wait_until(written, PATIENT_S, "the dragged weights in the agent")
    except AssertionError as exc:   # say why: the panel's own word, or the page moved
        info = page.locator(tid(f"weights-toggle-{agent}")).text_content()
        raise AssertionError(f"{exc}; the panel says {info!r}; the canvas was at "
                             f"{box}, is at {canvas.bounding_box()}") from None
    print(f"\ndragged weights of {agent} (range ±{scale:g}): {[round(x, 4) for x in weights[:6]]}")
    for i in range(4):
        assert weights[i] == pytest.approx(up, abs=2e-3 * scale)
    # Learning stays frozen: the weights stay where they were drawn.
    time.sleep(0.5)
    assert hub_weights(installation, agent)[0] == pytest.approx(up, abs=2e-3 * scale)


def test_the_hubs_alerts_do_not_move_the_page(dashboard):
    """The overload and storage alerts come and go with the hub's load; they float over
    the page, so a card (and the weights someone is drawing on it) stays put."""
    page = dashboard
    card = page.locator(tid("card-dash2"))
    before = card.bounding_box()
    say = "(kinds) => { for (const kind of kinds) window.anamnesis.dispatch({ type: 'event', " \
          "event: { kind, message: 'the hub runs at 60% of real time', t: Date.now() / 1000 } }); }"
    page.evaluate(say, ["overload", "store_failed"])
    try:
        page.wait_for_selector(tid("overload"), state="visible", timeout=5000)
        page.wait_for_selector(tid("storage"), state="visible", timeout=5000)
        assert card.bounding_box() == pytest.approx(before, abs=0.5)
    finally:
        page.evaluate(say, ["overload_end", "store_ok"])


def test_panic_silences_every_agent_and_escape_brings_them_back(dashboard, installation):
    page = dashboard
    # The scopes carry the agents' raw output samples (the last 1024 of each, 30 times a
    # second) and are read first; an overloaded hub pauses its scopes (they hold their last
    # frame), so an agent's output level in its telemetry (peak over a frame) counts too.
    loudest = """ids => ids.map((id) => {
        const s = window.anamnesis.scopes.get(id);
        return s && s.scope ? s.scope.reduce((m, x) => Math.max(m, Math.abs(x)), 0) : NaN;
    })"""
    peaks = "ids => ids.map((id) => Number(window.anamnesis.state.telemetry[id]?.peak ?? NaN))"
    silent = (f"ids => {{ const a = ({loudest})(ids), b = ({peaks})(ids); "
              f"return ids.every((_, i) => a[i] < 1e-6 || b[i] < 1e-6); }}")
    sounding = (f"ids => {{ const a = ({loudest})(ids), b = ({peaks})(ids); "
                f"return ids.every((_, i) => a[i] > 1e-3 || b[i] > 1e-3); }}")
    page.wait_for_function(sounding, arg=list(IDS), timeout=15_000)
    t0 = page.evaluate("() => Date.now()")
    page.locator(tid("panic")).click()
    try:
        # The 50 ms is the agents' own, counted in samples (tests/agents/dsp/test_safety.py);
        # here what the browser shows, however long a loaded machine takes to show it.
        silent_at = page.wait_for_function(f"ids => ({silent})(ids) && Date.now()",
                                           arg=list(IDS), polling="raf",
                                           timeout=30_000).json_value()
        print(f"\npanic: every agent's output silent in the dashboard {silent_at - t0:.0f} ms "
              f"after the click (fade 50 ms + a 21 ms scope window + 30 Hz pushes)")
        assert page.locator(tid("panic")).text_content() == "Unpanic"
        page.wait_for_function("ids => ids.every((id) => window.anamnesis.state.telemetry[id]"
                               ".panicked === 1)", arg=list(IDS), timeout=15_000)
        time.sleep(0.3)
        assert page.evaluate(silent, list(IDS))
        # The keyboard shortcut (Escape) is the second press.
        page.keyboard.press("Escape")
        page.wait_for_function(sounding, arg=list(IDS), timeout=15_000)
        # The button follows the hub's unpanic event and the agents' telemetry (20 Hz).
        page.wait_for_selector(tid("panic") + '[data-panicked="0"]', timeout=15_000)
        assert page.locator(tid("panic")).text_content() == "Panic"
    except BaseException:   # the module's agents must play on for the next tests
        async def unpanic() -> None:
            installation.hub.panic(False)

        installation.call(unpanic())
        raise


def test_a_pending_agent_is_adopted_from_its_card(dashboard, installation, tmp_path):
    page = dashboard
    installation.start_agent(tmp_path / "dashp", "dashp", signed=False)
    page.wait_for_selector(tid("status-dashp") + '[data-status="pending"]', timeout=15_000)
    adopt = page.locator(tid("adopt-dashp"))
    assert adopt.is_visible()
    adopt.click()
    page.wait_for_selector(tid("status-dashp") + '[data-status="online"]', timeout=10_000)
    assert not adopt.is_visible()
    assert installation.hub.registry.get("dashp").adopted


def test_no_dead_ends_a_hand_added_agent_labels_legend_and_forget(dashboard, installation,
                                                                  tmp_path):
    """Issue 15's dead ends, as an artist meets them: the piece says what to listen for;
    parameters read in words (the OSC name in small print); the floor plan has a legend;
    Make ring with an agent the simulated config does not place says what to do (and
    the floor plan stays draggable); an agent gone for good can be forgotten."""
    page = dashboard
    assert page.locator(tid("piece-about")).text_content() == (
        "Three agents in a small room; listen for the ring.")
    lr = page.locator(f'{tid("card-dash1")} label.param.range').first
    assert lr.locator(".name").text_content() == "learning rate/lr"
    title = lr.get_attribute("title")
    assert title.startswith("learning rate: step size") and title.endswith("(OSC /lr)"), title
    legend = page.locator(tid("room-legend"))
    assert legend.is_visible()
    for words in ("speaker", "microphone", "listener"):
        assert words in legend.text_content()

    agent = installation.start_agent(tmp_path / "dashq", "dashq", signed=False)
    page.wait_for_selector(tid("status-dashq") + '[data-status="pending"]', timeout=15_000)
    page.locator(tid("adopt-dashq")).click()
    page.wait_for_selector(tid("status-dashq") + '[data-status="online"]', timeout=10_000)
    page.locator(tid("ring-pick-dash1")).check()
    page.locator(tid("ring-pick-dashq")).check()
    page.locator(tid("ring-name")).fill("handmade")
    page.locator(tid("ring-add")).click()
    status = page.locator(tid("routing-status"))
    page.wait_for_function(
        "el => el.textContent.includes('not part of this simulated installation')",
        arg=status.element_handle(), timeout=5000)
    assert "--audio hub" in status.text_content() and '[[agent]] with id = "dashq"' in \
        status.text_content()
    assert not any(r.startswith("handmade:") for r in installation.hub.routes)
    page.locator(tid("ring-pick-dash1")).uncheck()

    # Gone for good: once offline, Forget takes the card away (an online one has none).
    assert not page.locator(tid("forget-dashq")).is_visible()
    assert not page.locator(tid("forget-dash1")).is_visible()
    installation.call(agent.stop(), timeout=30.0)
    page.wait_for_selector(tid("status-dashq") + '[data-status="offline"]', timeout=20_000)
    page.locator(tid("forget-dashq")).click()
    page.wait_for_selector(tid("card-dashq"), state="detached", timeout=5000)
    assert installation.hub.registry.get("dashq") is None


def test_on_a_phone_the_routing_matrix_says_it_scrolls(browser, installation):
    context, page = open_dashboard(browser, installation, viewport={"width": 390, "height": 844},
                                   is_mobile=True, has_touch=True)
    try:
        wrap = page.locator(tid("route-matrix-wrap"))
        wrap.scroll_into_view_if_needed()
        hint = page.locator(tid("route-matrix-hint"))
        # Eight agents overflow a phone; this hub has four, so the box is made as narrow
        # as eight would make it feel (and the page told, as a rotation would).
        if wrap.evaluate("el => el.scrollWidth - el.clientWidth") <= 2:
            wrap.evaluate("el => { el.style.maxWidth = '120px'; "
                          "window.dispatchEvent(new Event('resize')); }")
        assert wrap.evaluate("el => el.scrollWidth - el.clientWidth") > 2
        page.wait_for_selector(tid("route-matrix-hint"), state="visible", timeout=5000)
        assert "scroll" in hint.text_content()
        wrap.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
        page.wait_for_selector(tid("route-matrix-hint"), state="hidden", timeout=5000)
        # the sending agent's name stays in view while the matrix scrolls
        row_head = page.locator(f'{tid("route-matrix")} tbody th').first
        assert row_head.evaluate("el => getComputedStyle(el).position") == "sticky"
        page.screenshot(path=str(ARTIFACTS / "dashboard-phone-matrix.png"))
        assert page.errors == [], page.errors
    finally:
        context.close()


def test_listen_plays_an_agent_through_the_audio_worklet(dashboard, installation):
    page = dashboard
    page.locator(tid("listen-source")).select_option("dash1")
    page.locator(tid("listen-start")).click()
    sounding = f"""() => Number(document.querySelector('{tid("listen-level")}')
                   .dataset.rms) > 1e-4 && Number(document.querySelector(
                   '{tid("listen-level")}').dataset.rms)"""
    page.wait_for_function(sounding, timeout=15_000)
    # It plays on (half a second later it sounds again; a loaded machine may starve the
    # stream for a moment in between, which the worklet plays as silence).
    time.sleep(0.5)
    try:
        rms = page.wait_for_function(sounding, timeout=15_000).json_value()
    except Exception:
        raise AssertionError(page.locator(tid("header-error")).text_content()) from None
    latency = float(page.locator(tid("listen-latency")).get_attribute("data-ms"))
    print(f"\nlisten dash1: RMS {rms:.4f} in the worklet, latency {latency:.0f} ms")
    assert rms > 1e-4
    assert 0 < latency < 2000
    page.locator(tid("listen-start")).click()      # Stop
    page.wait_for_selector(tid("listen-start") + '[data-state="off"]', timeout=3000)
    assert float(page.locator(tid("listen-level")).get_attribute("data-rms")) == 0.0
    # The listener preview: the simulated room's stereo mix at the listener.
    page.locator(tid("listen-source")).select_option("listener")
    page.locator(tid("listen-start")).click()
    page.wait_for_function(f"""() => Number(document.querySelector('{tid("listen-level")}')
                              .dataset.rms) > 1e-4""", timeout=10_000)
    print(f"listen listener: RMS {float(page.locator(tid('listen-level')).get_attribute('data-rms')):.4f}")
    # A hidden tab stops listening (the browser says so with visibilitychange).
    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", { value: true, configurable: true });
        document.dispatchEvent(new Event("visibilitychange"));
        delete document.hidden;     // back to the prototype's getter
    }""")
    page.wait_for_selector(tid("listen-start") + '[data-state="off"]', timeout=3000)
    assert "hidden" in page.locator(tid("header-error")).text_content()
    # An unknown source: the hub closes with 4404 and the page says so.
    page.evaluate(f"""() => document.querySelector('{tid("listen-source")}')
                      .append(new Option("nobody", "nobody"))""")
    page.locator(tid("listen-source")).select_option("nobody")
    page.locator(tid("listen-start")).click()
    page.wait_for_function(f"""() => document.querySelector('{tid("header-error")}').textContent
                              .includes("nothing to listen to called nobody")""", timeout=5000)
    page.wait_for_selector(tid("listen-start") + '[data-state="off"]', timeout=3000)


def test_routes_scenes_and_the_room_from_the_page(dashboard, installation):
    page = dashboard
    hub = installation.hub
    cell = page.locator(tid("route-dash1-dash3"))
    cell.scroll_into_view_if_needed()
    cell.fill("0.3")
    cell.press("Enter")
    installation.wait(lambda: hub.routes.get("dash1->dash3", {}).get("gain") == 0.3, 5.0,
                      "route dash1->dash3 at gain 0.3")
    cell = page.locator(tid("route-dash1-dash3"))
    cell.fill("")
    cell.press("Enter")
    installation.wait(lambda: "dash1->dash3" not in hub.routes, 5.0, "the route deleted")

    # A ring from a selection, in the order picked: dash3 -> dash1 -> dash3.
    for agent in ("dash3", "dash1"):
        page.locator(tid(f"ring-pick-{agent}")).check()
    assert page.locator(tid("ring-order")).text_content() == "dash3 → dash1 → dash3"
    page.locator(tid("ring-name")).fill("back")
    page.locator(tid("ring-delay")).fill("20")
    page.locator(tid("ring-add")).click()
    installation.wait(lambda: {"back:dash3->dash1", "back:dash1->dash3"} <= set(hub.routes), 5.0,
                      "ring back in the hub")
    assert hub.routes["back:dash3->dash1"]["delay_ms"] == 20.0
    page.locator(tid("ring-delete-back")).click()
    installation.wait(lambda: not any(r.startswith("back:") for r in hub.routes), 5.0,
                      "ring back deleted")

    # Journey 1, step 4: save "dusk", change lr, save "night", blend the two.
    dusk_lr = oscquery_value(installation, "dash1", "lr")
    page.locator(tid("scene-name")).fill("dusk")
    page.locator(tid("scene-save")).click()
    page.wait_for_selector(tid("scene-dusk"), timeout=10_000)
    assert "dusk" in hub.scenes
    page.locator(tid("param-dash1-lr")).scroll_into_view_if_needed()
    click_slider_at(page, "param-dash1-lr", 0.7)
    night_lr = intended_value(page, "dash1", "lr")
    assert night_lr > 2 * dusk_lr, (dusk_lr, night_lr)
    wait_until(lambda: oscquery_value(installation, "dash1", "lr") == pytest.approx(night_lr, rel=1e-6),
               5.0, "dash1's lr at the night value")
    page.locator(tid("scene-name")).fill("night")
    page.locator(tid("scene-save")).click()
    page.wait_for_selector(tid("scene-night"), timeout=10_000)
    page.locator(tid("scene-a")).select_option("dusk")
    page.locator(tid("scene-b")).select_option("night")
    page.locator(tid("scene-t")).scroll_into_view_if_needed()
    click_slider_at(page, "scene-t", 0.5)
    t = float(page.locator(tid("scene-t")).input_value()) / 1000
    blend = (1 - t) * dusk_lr + t * night_lr
    got = wait_until(lambda: (v := oscquery_value(installation, "dash1", "lr")) == pytest.approx(
        blend, rel=1e-5) and v, 5.0, f"dash1's lr at the blend {blend:.6g} (t = {t:.3f})")
    print(f"\nscenes: lr dusk {dusk_lr:.6g}, night {night_lr:.6g}, blend at t = {t:.3f}: {got:.6g}")
    assert 0.3 < t < 0.7

    # Drag the listener 2 m towards +x (the plan's y axis points up: screen y inverted).
    listener = page.locator(tid("listener"))
    listener.scroll_into_view_if_needed()
    plan = page.locator(tid("room-plan")).bounding_box()
    box = listener.bounding_box()
    metres = page.evaluate(f"""() => {{
        const svg = document.querySelector('{tid("room-plan")}');
        const m = svg.getScreenCTM();
        return m.a;   // screen pixels per metre
    }}""")
    x0, y0 = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    assert plan["x"] < x0 < plan["x"] + plan["width"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 2.0 * metres, y0 - 1.0 * metres, steps=6)
    page.mouse.up()

    def moved():
        listener_at = (hub.room_layout() or {}).get("room", {}).get("listener") or [0, 0, 0]
        return listener_at if abs(listener_at[0] - 6.0) < 0.15 and abs(listener_at[1] - 4.0) < 0.15 else None

    where = installation.wait(moved, 5.0, "the listener at about (6, 4)")
    assert where[2] == pytest.approx(1.6)
    page.wait_for_function("""() => {
        const l = document.querySelector('[data-testid="listener"]');
        return Math.abs(Number(l.dataset.x) - 6) < 0.15 && Math.abs(Number(l.dataset.y) - 4) < 0.15;
    }""", timeout=5000)

    # RT60 from the room's controls.
    rt60 = page.locator(tid("room-rt60"))
    rt60.fill("0.5")
    page.locator(tid("room-apply")).click()
    installation.wait(lambda: (hub.get_room() or {}).get("rt60") == 0.5, 5.0, "RT60 0.5 s")

    # Recording, from the bar that is always in reach.
    page.locator(tid("record-name")).fill("take1")
    page.locator(tid("record")).click()
    page.wait_for_selector(tid("record") + '[data-recording="1"]', timeout=5000)
    time.sleep(0.3)
    page.locator(tid("record")).click()
    page.wait_for_selector(tid("record") + '[data-recording="0"]', timeout=5000)
    wav = installation.state_dir / "recordings" / "take1.wav"
    assert wav.is_file() and wav.stat().st_size > 10_000


def test_weight_couplings_are_drawn_and_edited_from_the_page(dashboard, installation):
    """Couple dash1's weights into dash2's from the routing panel: the hub runs it (its
    counts reach the page), the graph draws it dashed beside the routes, a change of mode
    and kappa lands, and Uncouple removes it from the hub and the drawing."""
    page = dashboard
    hub = installation.hub
    page.locator(tid("coupling-from")).scroll_into_view_if_needed()
    page.locator(tid("coupling-from")).select_option("dash1")
    page.locator(tid("coupling-to")).select_option("dash2")
    page.locator(tid("coupling-kappa")).fill("0.1")
    page.locator(tid("coupling-rate")).fill("10")
    page.locator(tid("coupling-add")).click()
    installation.wait(lambda: "dash1~>dash2" in hub.coupling_book.couplings, 5.0,
                      "coupling dash1~>dash2 in the hub")
    made = hub.coupling_book.couplings["dash1~>dash2"]
    assert (made.mode, made.kappa, made.rate_hz) == ("blend", 0.1, 10.0)
    line = page.locator('[data-testid="route-graph"] path[data-coupling="dash1~>dash2"]')
    line.wait_for(timeout=5000)
    assert page.evaluate("""() => getComputedStyle(document.querySelector(
        'path[data-coupling="dash1~>dash2"]')).strokeDasharray""") not in ("", "none")
    installation.wait(lambda: hub.coupling_driver.tasks["dash1~>dash2"].applied >= 5, 10.0,
                      "the coupling at work")
    page.locator(tid("coupling-select")).select_option("dash1~>dash2")
    page.wait_for_function("""() => /applied [1-9]/.test(
        document.querySelector('[data-testid="coupling-stats"]').textContent)""", timeout=5000)
    page.locator(tid("coupling-mode")).select_option("mean")
    page.locator(tid("coupling-kappa")).fill("0.5")
    page.locator(tid("coupling-apply")).click()
    installation.wait(lambda: hub.coupling_book.couplings["dash1~>dash2"].mode == "mean"
                      and hub.coupling_book.couplings["dash1~>dash2"].kappa == 0.5, 5.0,
                      "the coupling changed to mean at 0.5")
    page.locator(tid("coupling-delete")).click()
    installation.wait(lambda: not hub.coupling_book.couplings, 5.0, "the coupling deleted")
    line.wait_for(state="detached", timeout=5000)
    assert "dash1~>dash2" not in hub.coupling_driver.tasks


def test_reconnects_after_the_hub_drops_the_socket(dashboard, installation):
    from anamnesis.hub.api.keys import SOCKETS

    page = dashboard
    page.evaluate("""() => {
        window.__connSeen = [];
        const el = document.querySelector('[data-testid="conn-status"]');
        new MutationObserver(() => window.__connSeen.push(el.dataset.status))
            .observe(el, { attributes: true, attributeFilter: ["data-status"] });
    }""")
    app = installation.runner.app

    async def drop_every_socket() -> int:
        sockets = list(app[SOCKETS])
        for ws in sockets:
            await ws.close(code=1012, message=b"test: service restart")
        return len(sockets)

    assert installation.call(drop_every_socket()) >= 1
    page.wait_for_function("() => window.__connSeen.includes('closed') && "
                           "document.querySelector('[data-testid=\"conn-status\"]')"
                           ".dataset.status === 'open'", timeout=10_000)
    # Live again: fresh telemetry after the reconnect.
    page.evaluate("() => { window.__v = window.anamnesis.state.version; }")
    page.wait_for_function("() => window.anamnesis.state.version > window.__v + 5", timeout=5000)
    print(f"\nconnection states seen: {page.evaluate('() => window.__connSeen')}")


def test_without_a_token_the_page_asks_for_it(browser, installation):
    context = browser.new_context(viewport={"width": 375, "height": 667})
    try:
        page = context.new_page()
        page.goto(f"{installation.base}/")
        page.wait_for_selector(tid("conn-status") + '[data-status="unauthorized"]', timeout=10_000)
        form = page.locator(tid("token-form"))
        assert form.is_visible()
        page.locator(tid("token-input")).fill(installation.token)
        page.locator(tid("token-input")).press("Enter")
        page.wait_for_selector(tid("conn-status") + '[data-status="open"]', timeout=10_000)
        assert page.url == f"{installation.base}/"          # the token left the address bar
        page.wait_for_selector(tid("card-dash1"), timeout=10_000)
        assert not form.is_visible()
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["anamnesis_token"]["httpOnly"] is True
    finally:
        context.close()
