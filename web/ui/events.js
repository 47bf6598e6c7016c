// The event log: newest first (the hub's stored events after a (re)connect, then its pushes).
// Times are the hub's (Unix s), shown in the browser's time zone.

import { h } from "../util.js";

const SHOWN = 100;

export function mountEvents(root) {
  const list = h("ol", { class: "events", testid: "events" });
  root.append(h("h2", {}, "Events"), list);
  let last = null;
  return {
    update(state) {
      if (state.events === last) return;
      last = state.events;
      const items = [];
      // A burst of the same event (a slider drag sets parameters ten times a second)
      // shows once, newest time, with its count.
      for (let i = state.events.length - 1; i >= 0 && items.length < SHOWN; i--) {
        const e = state.events[i];
        let n = 1;
        while (i > 0 && state.events[i - 1].kind === e.kind && state.events[i - 1].message === e.message) {
          i--;
          n++;
        }
        const when = typeof e.t === "number" ? new Date(e.t * 1000).toLocaleTimeString() : "";
        items.push(h("li", { dataset: { kind: String(e.kind || "") } },
          h("time", {}, when), " ", h("span", { class: "kind" }, String(e.kind || "")), " ",
          h("span", { class: "msg" }, String(e.message || "")),
          n > 1 ? h("span", { class: "count" }, ` ×${n}`) : null));
      }
      list.replaceChildren(...items);
    },
  };
}
