// Scenes: save every agent's parameters and weights under a name, recall, delete, and a
// slider that blends two scenes (`interpolate {a, b, t}`, at most 5 per second while
// it moves and once on release; each blend writes every agent's weights, so faster
// would only queue up OSC).

import { h, reporter, throttle } from "../util.js";

export function mountScenes(root, ctx) {
  const name = h("input", { testid: "scene-name", placeholder: "scene name", "aria-label": "scene name", size: 10 });
  const save = h("button", { testid: "scene-save" }, "Save scene");
  const list = h("ul", { class: "scenes", testid: "scenes" });
  const a = h("select", { testid: "scene-a", "aria-label": "scene A" });
  const b = h("select", { testid: "scene-b", "aria-label": "scene B" });
  const t = h("input", { type: "range", min: 0, max: 1000, value: 0, testid: "scene-t", "aria-label": "blend A to B" });
  const tOut = h("output", {}, "0.00");
  const status = h("div", { class: "panel-status", role: "status" });

  const report = reporter(status);
  save.addEventListener("click", () => {
    const n = name.value.trim();
    if (!n) {
      status.textContent = "give the scene a name";
      return;
    }
    report("save", ctx.request("save_scene", { name: n }));
  });
  const blend = throttle((value) => {
    if (!a.value || !b.value) return;
    report("interpolate", ctx.request("interpolate", { a: a.value, b: b.value, t: value }));
  }, 200);
  t.addEventListener("input", () => {
    const v = Number(t.value) / 1000;
    tOut.textContent = v.toFixed(2);
    blend(v);
  });
  t.addEventListener("change", () => blend.flush());

  root.append(h("h2", {}, "Scenes"),
    h("div", { class: "row" }, name, save),
    list,
    h("div", { class: "row blend" }, h("span", {}, "A"), a, t, h("span", {}, "B"), b, tOut),
    status);

  let last = null;
  return {
    update(state) {
      if (state.scenes === last) return;
      last = state.scenes;
      list.replaceChildren(...state.scenes.map((s) => h("li", { testid: `scene-${s}` },
        h("span", { class: "name" }, s),
        h("button", { onclick: () => report("recall", ctx.request("recall_scene", { name: s })) }, "Recall"),
        h("button", { class: "danger", onclick: () => {
          if (confirm(`Delete scene ${s}?`)) report("delete", ctx.request("delete_scene", { name: s }));
        } }, "Delete"))));
      for (const [sel, fallback] of [[a, 0], [b, 1]]) {
        const keep = sel.value;
        sel.replaceChildren(...state.scenes.map((s) => h("option", { value: s }, s)));
        if (state.scenes.includes(keep)) sel.value = keep;
        else if (state.scenes.length) sel.value = state.scenes[Math.min(fallback, state.scenes.length - 1)];
      }
    },
  };
}
