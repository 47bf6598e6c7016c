// The room from above (x to the right, y up, metres): walls, every agent's speaker
// (square) and mic (circle), the listener (triangle pointing along its azimuth). All
// three are draggable: a drag sends the new position at most 10 times a second and
// once more on release (`put_room_layout`, or PUT /api/room/layout on a hub without
// that command); a position outside the room comes back as the hub's 400 and the
// item returns to where the hub says it is. Size and RT60 are set with `put_room`.

import { agentIds } from "../state.js";
import { formatNumber } from "../params.js";
import { h, reporter, svg, throttle } from "../util.js";

export function mountRoom(root, ctx) {
  const status = h("div", { class: "panel-status", role: "status", testid: "room-status" });
  const info = h("span", { class: "room-info", testid: "room-recomputing" });
  const plan = svg("svg", { class: "floor", "data-testid": "room-plan", role: "img",
                            "aria-label": "floor plan", preserveAspectRatio: "xMidYMid meet" });
  const walls = svg("rect", { class: "walls" });
  const grid = svg("g", { class: "grid" });
  const items = svg("g", { class: "items" });
  plan.append(walls, grid, items);
  const sx = h("input", { type: "number", step: 0.1, min: 1, testid: "room-x", "aria-label": "room length x (m)" });
  const sy = h("input", { type: "number", step: 0.1, min: 1, testid: "room-y", "aria-label": "room width y (m)" });
  const sz = h("input", { type: "number", step: 0.1, min: 1, testid: "room-z", "aria-label": "room height z (m)" });
  const rt60 = h("input", { type: "number", step: 0.05, min: 0.05, testid: "room-rt60", "aria-label": "RT60 (s)" });
  const apply = h("button", { testid: "room-apply" }, "Apply");
  const none = h("p", { class: "empty", testid: "room-none" }, "This installation has no simulated room.");
  // What the shapes are (the same shapes and colours as on the plan).
  const key = (cls, shape, text) => {
    const icon = svg("svg", { class: "floor legend-icon", viewBox: "-1 -1 2 2", width: 12, height: 12,
                              "aria-hidden": "true" });
    icon.append(shape === "rect" ? svg("rect", { class: cls, x: -0.8, y: -0.8, width: 1.6, height: 1.6 })
      : shape === "circle" ? svg("circle", { class: cls, r: 0.7 })
        : svg("polygon", { class: cls, points: "0,-0.9 0.8,0.8 -0.8,0.8" }));
    return h("span", { class: "legend-item" }, icon, text);
  };
  const legend = h("div", { class: "room-legend", testid: "room-legend" },
    key("speaker", "rect", "speaker"), key("mic", "circle", "microphone"),
    key("listener", "polygon", "listener (the headphone preview)"),
    h("span", { class: "legend-item" }, "drag any of them; metres, seen from above"));
  root.append(h("h2", {}, "Room ", info), none, plan, legend,
    h("div", { class: "row room-size" },
      h("label", {}, "x ", sx), h("label", {}, "y ", sy), h("label", {}, "z ", sz), h("span", {}, "m"),
      h("label", {}, "RT60 ", rt60, " s"), apply),
    status);

  const report = reporter(status);

  apply.addEventListener("click", () => {
    const layout = ctx.getState().room;
    if (!layout || !layout.room) return;
    const room = { ...layout.room, size: [Number(sx.value), Number(sy.value), Number(sz.value)], rt60: Number(rt60.value) };
    delete room.absorption;    // a room has rt60 or absorption; the user just chose rt60
    // The hub shows a setting left at its default as null (max_order, ...); sent back,
    // null is not a value: leave such keys out, as the config does.
    for (const k of Object.keys(room)) if (room[k] === null || room[k] === undefined) delete room[k];
    report("room", ctx.request("put_room", { room }));
  });

  async function putLayout(layout) {
    try {
      await ctx.request("put_room_layout", { layout });
      status.textContent = "";
    } catch (err) {
      status.textContent = `move: ${err.message}`;
      drag = null;    // show the hub's positions again
      render(ctx.getState(), true);
    }
  }
  const send = throttle(putLayout, 100);

  // drag: {what: "listener" | "speaker" | "mic", agent, pos: [x, y, z]} while a pointer holds an item
  let drag = null;
  let heldUntil = 0;
  let size = [1, 1, 1];

  function toRoom(ev) {
    const m = plan.getScreenCTM();
    if (!m) return null;
    const p = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m.inverse());
    const x = Math.min(Math.max(p.x, 0), size[0]);
    const y = Math.min(Math.max(size[1] - p.y, 0), size[1]);
    return [x, y];
  }

  function body(what, agent, pos) {
    if (what === "listener") return { listener: pos };
    return { agents: { [agent]: { [what]: pos } } };
  }

  function startDrag(ev, what, agent, pos) {
    ev.preventDefault();
    plan.setPointerCapture(ev.pointerId);
    drag = { what, agent, pos: pos.slice(), pointer: ev.pointerId };
  }

  plan.addEventListener("pointermove", (ev) => {
    if (!drag || ev.pointerId !== drag.pointer) return;
    const p = toRoom(ev);
    if (!p) return;
    drag.pos = [p[0], p[1], drag.pos[2]];
    send(body(drag.what, drag.agent, drag.pos.map((v) => Math.round(v * 1000) / 1000)));
    render(ctx.getState(), true);
  });
  const release = (ev) => {
    if (!drag || ev.pointerId !== drag.pointer) return;
    send.flush();
    heldUntil = performance.now() + 1000;
    const done = drag;
    drag = null;
    setTimeout(() => render(ctx.getState(), true), 1000);
    return done;
  };
  plan.addEventListener("pointerup", release);
  plan.addEventListener("pointercancel", release);

  let last = null;
  function render(state, force = false) {
    const layout = state.room;
    const room = layout && layout.room;
    none.hidden = !!room;
    plan.style.display = room ? "" : "none";
    legend.hidden = !room;
    if (!room) return;
    if (!force && layout === last) return;
    if (!drag && performance.now() < heldUntil && !force) return;
    last = layout;
    size = room.size || [10, 10, 3];
    const [X, Y] = size;
    const pad = Math.max(X, Y) * 0.04;
    plan.setAttribute("viewBox", `${-pad} ${-pad} ${X + 2 * pad} ${Y + 2 * pad}`);
    walls.setAttribute("x", 0);
    walls.setAttribute("y", 0);
    walls.setAttribute("width", X);
    walls.setAttribute("height", Y);
    grid.replaceChildren();
    for (let x = 1; x < X; x++) grid.append(svg("line", { x1: x, y1: 0, x2: x, y2: Y }));
    for (let y = 1; y < Y; y++) grid.append(svg("line", { x1: 0, y1: Y - y, x2: X, y2: Y - y }));
    const r = Math.max(X, Y) * 0.018;
    const fontSize = Math.max(X, Y) * 0.03;
    items.replaceChildren();
    const place = (what, agent, pos) => {
      if (drag && drag.what === what && drag.agent === agent) return drag.pos;
      return pos;
    };
    const agents = layout.agents || {};
    for (const id of [...new Set([...Object.keys(agents), ...agentIds(state)])]) {
      const a = agents[id];
      if (!a) continue;
      if (a.speaker) {
        const [x, y] = place("speaker", id, a.speaker);
        const el = svg("rect", { class: "speaker", x: x - r, y: Y - y - r, width: 2 * r, height: 2 * r,
                                 "data-testid": `speaker-${id}`, "data-x": x, "data-y": y });
        el.append(svg("title", {}, `${id} speaker (${formatNumber(x)}, ${formatNumber(y)}) m`));
        el.addEventListener("pointerdown", (ev) => startDrag(ev, "speaker", id, a.speaker));
        items.append(el, svg("text", { x: x + 1.4 * r, y: Y - y - 1.2 * r, "font-size": fontSize, class: "label" }, id));
      }
      if (a.mic) {
        const [x, y] = place("mic", id, a.mic);
        const el = svg("circle", { class: "mic", cx: x, cy: Y - y, r: 0.7 * r,
                                   "data-testid": `mic-${id}`, "data-x": x, "data-y": y });
        el.append(svg("title", {}, `${id} mic (${formatNumber(x)}, ${formatNumber(y)}) m`));
        el.addEventListener("pointerdown", (ev) => startDrag(ev, "mic", id, a.mic));
        items.append(el);
      }
    }
    if (room.listener) {
      const [x, y] = place("listener", null, room.listener);
      const az = ((room.listener_azimuth || 0) * Math.PI) / 180;
      // Azimuth 0 faces +y (the front wall); the triangle points where the listener looks.
      const pts = [[0, 1.6], [-1, -1], [1, -1]].map(([u, v]) => {
        const px = x + r * (u * Math.cos(az) + v * Math.sin(az));
        const py = y + r * (-u * Math.sin(az) + v * Math.cos(az));
        return `${px},${Y - py}`;
      }).join(" ");
      const el = svg("polygon", { class: "listener", points: pts, "data-testid": "listener", "data-x": x, "data-y": y });
      el.append(svg("title", {}, `listener (${formatNumber(x)}, ${formatNumber(y)}) m`));
      el.addEventListener("pointerdown", (ev) => startDrag(ev, "listener", null, room.listener));
      items.append(el);
    }
    if (!drag) {
      const active = document.activeElement;
      const editing = [sx, sy, sz, rt60].includes(active);
      if (!editing) {
        sx.value = String(size[0]);
        sy.value = String(size[1]);
        sz.value = String(size[2]);
        rt60.value = room.rt60 != null ? String(room.rt60) : "";
      }
    }
    info.textContent = layout.recomputing ? "recomputing responses…"
      : layout.responses_ms != null ? `responses computed in ${Math.round(layout.responses_ms)} ms` : "";
    info.dataset.recomputing = layout.recomputing ? "1" : "0";
  }

  return { update: (state) => render(state) };
}
