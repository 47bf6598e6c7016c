// The one module that owns the hub's WebSocket (/ws?scopes=1; hub/api.py's protocol).
//
// It reconnects with backoff (util.backoff), hands every JSON message to `onMessage`
// and every binary one (scopes) to `onBinary`, and turns commands into promises:
// `request("set_params", {agent, params})` sends {"id": N, "cmd": ...} and resolves
// with the reply's result (rejects with its error). When the socket cannot open, a
// plain GET of /ws tells why: 401 means the page has no (or a wrong) token.

import { backoff } from "./util.js";

/** Longest a command waits for its reply (ms). */
export const REPLY_TIMEOUT_MS = 8000;

export class Connection {
  /**
   * `onMessage(msg)` for every JSON push and for {type: "conn", status, attempt}
   * changes; `onBinary(ArrayBuffer)` for scope frames; `onOpen()` after each (re)connect.
   */
  constructor({ onMessage, onBinary, onOpen, url = null }) {
    this.onMessage = onMessage;
    this.onBinary = onBinary;
    this.onOpen = onOpen || (() => {});
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url || `${proto}//${location.host}/ws?scopes=1`;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();   // id -> {resolve, reject, timer}
    this.attempt = 0;
    this.stopped = false;
    this.retryTimer = null;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close();
  }

  status(status) {
    this.onMessage({ type: "conn", status, attempt: this.attempt });
  }

  open() {
    this.status("connecting");
    let opened = false;
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.status("open");
      this.onOpen();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") {
        this.onBinary(ev.data);
        return;
      }
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (err) {
        console.warn("hub sent malformed JSON", err);
        return;
      }
      if (msg && msg.type === "reply" && this.pending.has(msg.id)) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new Error(msg.error || "refused"));
        return;
      }
      this.onMessage(msg);
    };
    ws.onclose = async () => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error("connection to the hub lost"));
      }
      this.pending.clear();
      if (this.stopped) return;
      if (!opened && (await this.unauthorized())) {
        this.status("unauthorized");
        return;
      }
      this.attempt += 1;
      this.status("closed");
      this.retryTimer = setTimeout(() => this.open(), backoff(this.attempt - 1));
    };
  }

  /** True when the hub answers 401 to a plain GET of /ws (no or wrong token cookie). */
  async unauthorized() {
    try {
      const r = await fetch("/ws", { credentials: "same-origin" });
      return r.status === 401;
    } catch {
      return false;
    }
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a command; resolves with the hub's result (rejects with its error). */
  request(cmd, args = {}) {
    if (!this.isOpen) return Promise.reject(new Error("not connected to the hub"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${cmd}: no reply within ${REPLY_TIMEOUT_MS / 1000} s`));
      }, REPLY_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, cmd, ...args }));
    });
  }
}
