// Routing: the gain matrix (from × to; edit a cell to add, change or remove a route),
// an SVG drawing of the agents, their edges and their weight couplings (dashed, bent the
// other way), an edge editor (delay, filters, shape), rings made from a selection of
// agents (in the order they were picked) and a coupling editor (mode, kappa, rate).

import { agentIds, ringNames } from "../state.js";
import { formatNumber } from "../params.js";
import { h, reporter, svg } from "../util.js";

function numberOrNull(input) {
  const v = input.value.trim();
  return v === "" ? null : Number(v);
}

export function mountRouting(root, ctx) {
  const status = h("div", { class: "panel-status", role: "status", testid: "routing-status" });
  const report = reporter(status);

  const table = h("table", { class: "matrix", testid: "route-matrix" });
  const drawing = svg("svg", { class: "graph", viewBox: "-1.25 -1.25 2.5 2.5", "data-testid": "route-graph",
                               role: "img", "aria-label": "routing graph" });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 5,
                                 markerHeight: 5, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "currentColor" }));
  defs.append(marker);
  drawing.append(defs);
  const edgesLayer = svg("g", { class: "edges" });
  const nodesLayer = svg("g", { class: "nodes" });
  drawing.append(edgesLayer, nodesLayer);

  // Edge editor
  const pick = h("select", { testid: "route-select", "aria-label": "route" });
  const gain = h("input", { type: "number", step: 0.05, min: -16, max: 16, testid: "route-gain", "aria-label": "gain" });
  const delay = h("input", { type: "number", step: 1, min: 0, max: 10000, testid: "route-delay", "aria-label": "delay (ms)" });
  const lowpass = h("input", { type: "number", step: 10, min: 0, placeholder: "off", testid: "route-lowpass", "aria-label": "lowpass (Hz)" });
  const highpass = h("input", { type: "number", step: 1, min: 0, placeholder: "off", testid: "route-highpass", "aria-label": "highpass (Hz)" });
  const shape = h("select", { testid: "route-shape", "aria-label": "shape" },
    h("option", { value: "none" }, "none"), h("option", { value: "tanh" }, "tanh"));
  const apply = h("button", { testid: "route-apply" }, "Apply");
  const del = h("button", { class: "danger", testid: "route-delete" }, "Delete");
  apply.addEventListener("click", () => {
    if (!pick.value) return;
    report("update", ctx.request("update_route", { route_id: pick.value, route: {
      gain: Number(gain.value), delay_ms: Number(delay.value),
      lowpass_hz: numberOrNull(lowpass), highpass_hz: numberOrNull(highpass), shape: shape.value } }));
  });
  del.addEventListener("click", () => {
    if (pick.value) report("delete", ctx.request("delete_route", { route_id: pick.value }));
  });
  let shownRoute = null;
  let editor = null;
  const fillEditor = (route) => {
    shownRoute = route ? route.id : null;
    for (const el of [gain, delay, lowpass, highpass, shape, apply, del]) el.disabled = !route;
    if (!route) return;
    gain.value = String(route.gain);
    delay.value = String(route.delay_ms);
    lowpass.value = route.lowpass_hz == null ? "" : String(route.lowpass_hz);
    highpass.value = route.highpass_hz == null ? "" : String(route.highpass_hz);
    shape.value = route.shape || "none";
  };
  pick.addEventListener("change", () => fillEditor(ctx.getState().routes[pick.value] || null));

  // Weight couplings: pick one to edit, or two agents to add one.
  const cpick = h("select", { testid: "coupling-select", "aria-label": "coupling" });
  const cfrom = h("select", { testid: "coupling-from", "aria-label": "coupling from" });
  const cto = h("select", { testid: "coupling-to", "aria-label": "coupling to" });
  const cmode = h("select", { testid: "coupling-mode", "aria-label": "coupling mode" },
    ...["blend", "exchange", "mean"].map((m) => h("option", { value: m }, m)));
  const ckappa = h("input", { type: "number", step: 0.01, min: 0, max: 1, value: 0.05,
                              testid: "coupling-kappa", "aria-label": "kappa (0-1)" });
  const crate = h("input", { type: "number", step: 1, min: 1, max: 100, value: 20,
                             testid: "coupling-rate", "aria-label": "rate (Hz)" });
  const cadd = h("button", { testid: "coupling-add" }, "Couple");
  const capply = h("button", { testid: "coupling-apply" }, "Apply");
  const cdel = h("button", { class: "danger", testid: "coupling-delete" }, "Uncouple");
  const cstats = h("span", { class: "coupling-stats", testid: "coupling-stats" });
  const couplingBody = () => ({ mode: cmode.value, kappa: Number(ckappa.value),
                                rate_hz: Number(crate.value) });
  cadd.addEventListener("click", () => {
    if (!cfrom.value || !cto.value) return;
    report("couple", ctx.request("add_coupling", { coupling: {
      from: cfrom.value, to: cto.value, ...couplingBody() } }));
  });
  capply.addEventListener("click", () => {
    if (cpick.value) report("coupling", ctx.request("update_coupling",
      { coupling_id: cpick.value, coupling: couplingBody() }));
  });
  cdel.addEventListener("click", () => {
    if (cpick.value) report("uncouple", ctx.request("delete_coupling", { coupling_id: cpick.value }));
  });
  const showStats = (c) => {
    const st = c && c.stats;
    cstats.textContent = st ? `applied ${st.applied}, stale ${st.stale}` +
      (st.error ? ` — ${st.error}` : "") : "";
  };
  const fillCoupling = (c) => {
    for (const el of [capply, cdel]) el.disabled = !c;
    showStats(c);
    if (!c) return;
    cmode.value = c.mode;
    ckappa.value = String(c.kappa);
    crate.value = String(c.rate_hz);
  };
  // The counts are the hub's live ones: read them (every 2 s while a coupling is chosen).
  const readCouplings = async () => {
    try {
      ctx.dispatch({ type: "couplings", couplings: await ctx.request("couplings") });
    } catch (err) {
      console.warn(`reading couplings failed: ${err.message}`);
    }
  };
  cpick.addEventListener("change", () => {
    fillCoupling(ctx.getState().couplings[cpick.value] || null);
    if (cpick.value) readCouplings();
  });
  setInterval(() => { if (cpick.value && !document.hidden) readCouplings(); }, 2000);

  // Rings
  const picks = [];     // agent ids in the order picked
  const pickBox = h("div", { class: "ring-picks", testid: "ring-picks" });
  const ringName = h("input", { testid: "ring-name", placeholder: "ring name", size: 8, "aria-label": "ring name" });
  const ringGain = h("input", { type: "number", step: 0.05, value: 0.5, testid: "ring-gain", "aria-label": "ring gain" });
  const ringDelay = h("input", { type: "number", step: 1, min: 0, value: 10, testid: "ring-delay", "aria-label": "ring delay (ms)" });
  const ringOrder = h("span", { class: "ring-order", testid: "ring-order" });
  const ringAdd = h("button", { testid: "ring-add" }, "Make ring");
  const ringList = h("ul", { class: "rings", testid: "rings" });
  ringAdd.addEventListener("click", async () => {
    const name = ringName.value.trim();
    if (!name || picks.length < 2) {
      status.textContent = "a ring needs a name and at least two agents (tick them in ring order)";
      return;
    }
    const done = await report("ring", ctx.request("add_ring", { ring: {
      name, agents: picks.slice(), gain: Number(ringGain.value), delay_ms: Number(ringDelay.value) } }));
    if (done !== undefined) {
      picks.length = 0;
      lastPickKey = "";
      update(ctx.getState());
    }
  });

  // On a narrow screen (a phone shows a7/a8 at its edge) the matrix scrolls sideways: while
  // columns are out of view to the right, a fade over that edge and "scroll →" say so.
  const wrap = h("div", { class: "matrix-wrap", testid: "route-matrix-wrap" }, table);
  const hint = h("div", { class: "scroll-hint", testid: "route-matrix-hint", hidden: true },
    "scroll → for the other agents");
  const box = h("div", { class: "matrix-box", testid: "route-matrix-box", dataset: { more: "0" } }, wrap, hint);
  const showHint = () => {
    const more = wrap.scrollWidth - wrap.clientWidth - wrap.scrollLeft > 2;
    if (hint.hidden === more) hint.hidden = !more;
    box.dataset.more = more ? "1" : "0";
  };
  wrap.addEventListener("scroll", showHint, { passive: true });
  window.addEventListener("resize", showHint);
  // The panel changes width without the window doing so (a rotation, the page's layout
  // settling, rows of agents arriving): watch the box and the table themselves.
  if (typeof ResizeObserver !== "undefined") {
    const sized = new ResizeObserver(showHint);
    sized.observe(wrap);
    sized.observe(table);
  }
  root.append(h("h2", {}, "Routing"),
    h("div", { class: "routing" }, box, drawing),
    editor = h("div", { class: "row edge-editor" }, pick,
      h("label", {}, "gain ", gain), h("label", {}, "delay ms ", delay),
      h("label", {}, "lowpass Hz ", lowpass), h("label", {}, "highpass Hz ", highpass),
      h("label", {}, "shape ", shape), apply, del),
    h("div", { class: "row ring-maker" }, pickBox, ringOrder, ringName,
      h("label", {}, "gain ", ringGain), h("label", {}, "delay ms ", ringDelay), ringAdd),
    ringList,
    h("div", { class: "row coupling-editor", title: "weight couplings: one agent's learned " +
                 "weights carried into another's (blend), swapped (exchange) or drawn to " +
                 "their mean, kappa of the way, rate times a second" },
      h("span", { class: "legend-coupling" }, "couple weights"), cpick,
      h("label", {}, "from ", cfrom), h("label", {}, "to ", cto), h("label", {}, "mode ", cmode),
      h("label", {}, "kappa ", ckappa), h("label", {}, "Hz ", crate), cadd, capply, cdel, cstats),
    status);

  let lastRoutes = null;
  let lastCouplings = null;
  let lastIds = "";
  let lastCouplingKey = "";

  // The coupling editor's lists: the couplings, and the agents to couple (kept while
  // neither changes, so a push does not reset what the user is choosing).
  function fillCouplingPicks(state, ids) {
    const all = Object.keys(state.couplings || {}).sort();
    const key = all.join(",") + "|" + ids.join(",");
    if (key !== lastCouplingKey) {
      lastCouplingKey = key;
      const chosen = cpick.value;
      cpick.replaceChildren(h("option", { value: "" }, all.length ? "coupling…" : "no couplings"),
        ...all.map((id) => h("option", { value: id }, id)));
      if (all.includes(chosen)) cpick.value = chosen;
      for (const sel of [cfrom, cto]) {
        const was = sel.value;
        sel.replaceChildren(...ids.map((id) => h("option", { value: id }, id)));
        if (ids.includes(was)) sel.value = was;
      }
      if (!cto.value || cto.value === cfrom.value) cto.value = ids.find((id) => id !== cfrom.value) || "";
    }
    // The inputs keep what the user is typing; the counts always follow the hub.
    const editingCoupling = cpick.parentElement && cpick.parentElement.contains(document.activeElement);
    if (!editingCoupling) fillCoupling(state.couplings[cpick.value] || null);
    else showStats(state.couplings[cpick.value] || null);
  }
  let lastPickKey = "";

  // Matrix cells, made when the agents change and updated in place (a push never
  // replaces the input the user is typing in).
  const cells = new Map();   // "from\u0000to" -> {input, rings}

  function makeCell(from, to) {
    const input = h("input", { type: "number", step: 0.05, testid: `route-${from}-${to}`,
                               "aria-label": `gain ${from} to ${to}`, placeholder: "·" });
    const rings = h("span", { class: "ring-edges" });
    input.addEventListener("focus", () => {
      const state = ctx.getState();
      const r = state.routes[`${from}->${to}`] ||
        Object.values(state.routes).find((x) => x.from === from && x.to === to);
      if (r) {
        pick.value = r.id;
        fillEditor(r);
      }
    });
    input.addEventListener("change", () => {
      const plain = ctx.getState().routes[`${from}->${to}`];
      const v = input.value.trim();
      if (v === "" && plain) report("delete", ctx.request("delete_route", { route_id: plain.id }));
      else if (v !== "" && plain) report("gain", ctx.request("update_route", { route_id: plain.id, route: { gain: Number(v) } }));
      else if (v !== "") report("add", ctx.request("add_route", { route: { from, to, gain: Number(v) } }));
    });
    cells.set(`${from}\u0000${to}`, { input, rings });
    return h("td", {}, input, rings);
  }

  function fillCells(state) {
    for (const [key, { input, rings }] of cells) {
      const [from, to] = key.split("\u0000");
      const plain = state.routes[`${from}->${to}`];
      if (input !== document.activeElement) input.value = plain ? String(plain.gain) : "";
      input.classList.toggle("set", !!plain);
      rings.replaceChildren(...Object.values(state.routes)
        .filter((r) => r.from === from && r.to === to && r.id.includes(":"))
        .map((r) => h("span", { class: "ring-edge", title: r.id }, `${r.id.split(":")[0]} ${formatNumber(r.gain)}`)));
    }
  }

  function drawGraph(state, ids) {
    const pos = new Map();
    ids.forEach((id, i) => {
      const a = (2 * Math.PI * i) / Math.max(1, ids.length) - Math.PI / 2;
      pos.set(id, [Math.cos(a), Math.sin(a)]);
    });
    edgesLayer.replaceChildren();
    for (const r of Object.values(state.routes)) {
      const p = pos.get(r.from);
      const q = pos.get(r.to);
      if (!p || !q) continue;
      // Bend every edge to its left, so a->b and b->a do not overlap.
      const mx = (p[0] + q[0]) / 2;
      const my = (p[1] + q[1]) / 2;
      const dx = q[0] - p[0];
      const dy = q[1] - p[1];
      const len = Math.hypot(dx, dy) || 1;
      const k = 0.15;
      const cx = mx - (dy / len) * k;
      const cy = my + (dx / len) * k;
      // End short of the node circles.
      const shrink = (x, y, tx, ty, d) => {
        const l = Math.hypot(tx - x, ty - y) || 1;
        return [x + ((tx - x) / l) * d, y + ((ty - y) / l) * d];
      };
      const [sx, sy] = shrink(p[0], p[1], cx, cy, 0.13);
      const [ex, ey] = shrink(q[0], q[1], cx, cy, 0.14);
      const path = svg("path", { d: `M ${sx} ${sy} Q ${cx} ${cy} ${ex} ${ey}`,
                                 class: r.id.includes(":") ? "edge ring" : "edge",
                                 "stroke-width": 0.01 + 0.03 * Math.min(1, Math.abs(r.gain)),
                                 "marker-end": "url(#arrow)", "data-route": r.id });
      path.append(svg("title", {}, `${r.id}: gain ${formatNumber(r.gain)}, ${formatNumber(r.delay_ms)} ms`));
      edgesLayer.append(path);
    }
    for (const c of Object.values(state.couplings || {})) {
      const p = pos.get(c.from);
      const q = pos.get(c.to);
      if (!p || !q) continue;
      // Bent to the right (routes bend left), ending in a dot where the weights arrive.
      const dx = q[0] - p[0];
      const dy = q[1] - p[1];
      const len = Math.hypot(dx, dy) || 1;
      const cx = (p[0] + q[0]) / 2 + (dy / len) * 0.22;
      const cy = (p[1] + q[1]) / 2 - (dx / len) * 0.22;
      const toward = (x, y, d) => {
        const l = Math.hypot(cx - x, cy - y) || 1;
        return [x + ((cx - x) / l) * d, y + ((cy - y) / l) * d];
      };
      const [sx, sy] = toward(p[0], p[1], 0.13);
      const [ex, ey] = toward(q[0], q[1], 0.15);
      const path = svg("path", { d: `M ${sx} ${sy} Q ${cx} ${cy} ${ex} ${ey}`,
                                 class: `coupling ${c.mode}`, "data-coupling": c.id,
                                 "stroke-width": 0.008 + 0.03 * Math.min(1, c.kappa * 5) });
      path.append(svg("title", {}, `${c.id}: ${c.mode} weights, kappa ${formatNumber(c.kappa)}` +
                                   ` at ${formatNumber(c.rate_hz)} Hz`));
      edgesLayer.append(path, svg("circle", { class: "coupling-end", cx: ex, cy: ey, r: 0.025 }));
    }
    nodesLayer.replaceChildren();
    for (const [id, [x, y]] of pos) {
      const agent = state.agents[id];
      const g = svg("g", { class: `node ${agent ? agent.status : "config"}` });
      g.append(svg("circle", { cx: x, cy: y, r: 0.12 }), svg("text", { x, y: y + 0.04, "text-anchor": "middle" }, id));
      nodesLayer.append(g);
    }
  }

  function update(state) {
    const routeIds = new Set();
    for (const r of Object.values(state.routes)) { routeIds.add(r.from); routeIds.add(r.to); }
    // Adopted agents and every route's ends (a pending agent joins once adopted).
    const adopted = agentIds(state).filter((id) => state.agents[id].adopted !== false);
    const ids = [...new Set([...adopted, ...routeIds])]
      .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const idKey = ids.join("\u0000");
    for (let i = picks.length - 1; i >= 0; i--) if (!ids.includes(picks[i])) picks.splice(i, 1);
    const pickKey = idKey + "|" + picks.join(",");
    if (pickKey !== lastPickKey) {
      lastPickKey = pickKey;
      pickBox.replaceChildren(...ids.map((id) => {
        const box = h("input", { type: "checkbox", testid: `ring-pick-${id}`, checked: picks.includes(id) });
        box.addEventListener("change", () => {
          const i = picks.indexOf(id);
          if (box.checked && i < 0) picks.push(id);
          if (!box.checked && i >= 0) picks.splice(i, 1);
          ringOrder.textContent = picks.length ? picks.join(" → ") + " → " + picks[0] : "";
        });
        return h("label", {}, box, id);
      }));
      ringOrder.textContent = picks.length ? picks.join(" → ") + " → " + picks[0] : "";
    }
    fillCouplingPicks(state, ids);
    if (state.routes === lastRoutes && state.couplings === lastCouplings && idKey === lastIds) return;
    if (idKey !== lastIds) {
      cells.clear();
      const head = h("tr", {}, h("th", { class: "corner" }, "from \\ to"), ...ids.map((id) => h("th", {}, id)));
      const rows = ids.map((from) => h("tr", {}, h("th", {}, from), ...ids.map((to) => makeCell(from, to))));
      table.replaceChildren(h("thead", {}, head), h("tbody", {}, ...rows));
    }
    lastRoutes = state.routes;
    lastCouplings = state.couplings;
    lastIds = idKey;
    fillCells(state);
    showHint();
    drawGraph(state, ids);
    const chosen = pick.value;
    const all = Object.keys(state.routes).sort();
    pick.replaceChildren(h("option", { value: "" }, all.length ? "edge…" : "no edges"),
      ...all.map((id) => h("option", { value: id }, id)));
    if (all.includes(chosen)) pick.value = chosen;
    const editing = editor.contains(document.activeElement) && shownRoute === pick.value;
    if (!editing) fillEditor(state.routes[pick.value] || null);
    ringList.replaceChildren(...ringNames(state).map((name) => h("li", {},
      h("span", {}, name),
      h("button", { class: "danger", testid: `ring-delete-${name}`,
                    onclick: () => report("delete ring", ctx.request("delete_ring", { name })) }, "Delete ring"))));
  }

  fillEditor(null);
  fillCoupling(null);
  return { update };
}
