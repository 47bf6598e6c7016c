// Always in reach: the installation's name, the connection, panic, recording, listening.
//
// Panic: the button or Escape (a second press, or the button's "Unpanic", brings the
// piece back). The button shows what the hub says (the panic/unpanic events and the
// agents' own `panicked` telemetry), so every browser shows the same.

import { isPanicked } from "../state.js";
import { h } from "../util.js";
import { Listener } from "../listen.js";

export function mountHeader(root, ctx) {
  const title = h("h1", { class: "title", testid: "title" }, "anamnesis");
  const conn = h("span", { class: "conn", testid: "conn-status", dataset: { status: "connecting" } }, "connecting…");
  const panic = h("button", { class: "panic", testid: "panic", title: "Fade every speaker to silence (Escape)" }, "Panic");
  const error = h("span", { class: "header-error", testid: "header-error", role: "status" });
  // What to listen for (the piece's description), and the hub's overload, said plainly.
  // The alerts float over the page's foot (they come and go with the hub's load): were they
  // in the header's flow, each would move the page under the pointer of someone drawing.
  const about = h("p", { class: "piece-about", testid: "piece-about", hidden: true });
  const overload = h("span", { class: "overload", testid: "overload", role: "alert", hidden: true });
  const storage = h("span", { class: "overload", testid: "storage", role: "alert", hidden: true });

  let busy = false;
  async function togglePanic() {
    if (busy) return;
    busy = true;
    const on = !isPanicked(ctx.getState());
    try {
      await ctx.request(on ? "panic" : "unpanic");
      error.textContent = "";
    } catch (err) {
      error.textContent = `panic: ${err.message}`;
    } finally {
      busy = false;
    }
  }
  panic.addEventListener("click", togglePanic);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !ev.repeat) {
      ev.preventDefault();
      togglePanic();
    }
  });

  // Recording
  const recName = h("input", { class: "rec-name", testid: "record-name", placeholder: "take", size: 8,
                               "aria-label": "recording name" });
  const rec = h("button", { class: "record", testid: "record" }, "Record");
  rec.addEventListener("click", async () => {
    const recording = ctx.getState().recording;
    try {
      if (recording) await ctx.request("record_stop");
      else {
        const name = recName.value.trim() || `take-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}`;
        await ctx.request("record_start", { name });
      }
      error.textContent = "";
    } catch (err) {
      error.textContent = `record: ${err.message}`;
    }
  });

  // Listening
  const source = h("select", { class: "listen-source", testid: "listen-source", "aria-label": "listen to" });
  const listenBtn = h("button", { class: "listen", testid: "listen-start" }, "Listen");
  const level = h("span", { class: "listen-level", testid: "listen-level", dataset: { rms: "0", peak: "0" } },
                  h("span", { class: "bar" }));
  const latency = h("span", { class: "listen-latency", testid: "listen-latency" }, "");
  const listener = new Listener({
    onLevel: ({ rms, peak, latencyMs, bufferedMs }) => {
      level.dataset.rms = String(rms);
      level.dataset.peak = String(peak);
      const db = 20 * Math.log10(Math.max(rms, 1e-6));
      level.firstChild.style.width = `${Math.max(0, Math.min(100, (db + 60) / 60 * 100))}%`;
      latency.textContent = Number.isFinite(latencyMs) ? `${Math.round(latencyMs)} ms` : `${Math.round(bufferedMs)} ms`;
      latency.dataset.ms = String(latencyMs);
    },
    onState: (s, why) => {
      listenBtn.textContent = s === "off" ? "Listen" : "Stop";
      listenBtn.dataset.state = s;
      if (why) error.textContent = `listen: ${why}`;
      if (s === "off") {
        level.dataset.rms = "0";
        level.firstChild.style.width = "0%";
        latency.textContent = "";
      }
    },
  });
  listenBtn.addEventListener("click", () => {
    if (listener.active) listener.stop();
    else {
      error.textContent = "";
      listener.start(source.value || "listener");
    }
  });

  root.append(
    h("div", { class: "brand" }, title, conn),
    h("div", { class: "always" }, panic,
      h("span", { class: "group" }, recName, rec),
      h("span", { class: "group" }, source, listenBtn, level, latency)),
    about, h("div", { class: "alerts", testid: "alerts" }, overload, storage, error));

  let lastSources = "";
  return {
    update(state) {
      title.textContent = state.name || "anamnesis";
      document.title = `${state.name || "anamnesis"} — dashboard`;
      const status = state.conn.status;
      if (conn.dataset.status !== status) conn.dataset.status = status;
      conn.textContent = status === "open" ? "connected"
        : status === "closed" ? `reconnecting (${state.conn.attempt})…`
        : status === "unauthorized" ? "token needed" : "connecting…";
      about.hidden = !state.description;
      if (state.description && about.textContent !== state.description) about.textContent = state.description;
      overload.hidden = !state.overload;
      overload.textContent = state.overload ? state.overload.message : "";
      storage.hidden = !state.storage;
      storage.textContent = state.storage || "";
      const panicked = isPanicked(state);
      panic.textContent = panicked ? "Unpanic" : "Panic";
      panic.dataset.panicked = panicked ? "1" : "0";
      panic.classList.toggle("on", panicked);
      rec.textContent = state.recording ? `Stop ${state.recording}` : "Record";
      rec.classList.toggle("on", !!state.recording);
      rec.dataset.recording = state.recording ? "1" : "0";
      // What the hub says it can stream (hello's "listen"), else every agent and the listener.
      const sources = state.listen ? state.listen.map((x) => x.source)
        : ["listener", ...Object.keys(state.agents).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))];
      const key = sources.join("\u0000");
      if (key !== lastSources) {
        lastSources = key;
        const chosen = source.value;
        const ordered = [...sources.filter((s) => s === "listener"), ...sources.filter((s) => s !== "listener")];
        source.replaceChildren(...ordered.map((s) =>
          h("option", { value: s }, s === "listener" ? "listener (room preview)" : s)));
        if (sources.includes(chosen)) source.value = chosen;
        listenBtn.disabled = sources.length === 0;
      }
    },
  };
}
