// An agent's snapshots kept by the hub (its weights and parameters under a name: the
// live agent's presets): save the current state, recall one. The list is read when
// the panel opens and after each save (`snapshots {agent}`).

import { h } from "../util.js";

export class SnapshotsPanel {
  constructor(id, ctx, report) {
    this.id = id;
    this.ctx = ctx;
    this.report = report;
    this.list = h("select", { testid: `snapshot-list-${id}`, "aria-label": `snapshots of ${id}` });
    this.recall = h("button", { testid: `snapshot-recall-${id}` }, "Recall");
    this.name = h("input", { testid: `snapshot-name-${id}`, placeholder: "name", size: 8,
                             "aria-label": `snapshot name for ${id}` });
    this.save = h("button", { testid: `snapshot-save-${id}` }, "Save");
    this.el = h("details", { class: "snapshots-panel", testid: `snapshots-panel-${id}` },
      h("summary", {}, "Snapshots"),
      h("div", { class: "row" }, this.list, this.recall, this.name, this.save));
    this.el.addEventListener("toggle", () => { if (this.el.open) this.load(); });
    this.recall.addEventListener("click", async () => {
      if (!this.list.value) return;
      await this.report("recall", ctx.request("recall_snapshot", { agent: id, name: this.list.value }));
    });
    this.save.addEventListener("click", async () => {
      const name = this.name.value.trim();
      if (!name) return;
      await this.report("snapshot", ctx.request("save_snapshot", { agent: id, name }));
      this.load();
    });
  }

  async load() {
    try {
      const snaps = await this.ctx.request("snapshots", { agent: this.id });
      const keep = this.list.value;
      this.list.replaceChildren(...(snaps.length ? snaps : [{ name: "" }]).map((s) =>
        h("option", { value: s.name }, s.name || "none yet")));
      if (snaps.some((s) => s.name === keep)) this.list.value = keep;
    } catch (err) {
      this.report("snapshots", Promise.reject(err));
    }
  }
}
