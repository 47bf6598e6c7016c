// Hearing an agent or the listener preview in the browser: /ws/listen -> AudioWorklet.
//
// The hub sends {"type": "listen", source, channels, sample_rate} then binary frames
// (frames.js decodeListen). Samples go to worklet.js's ring buffer (transferred, not
// copied); the worklet plays them at the AudioContext's rate (resampling if the
// stream's differs) and posts its level and buffered time back ~10 times a second.
// Latency shown = buffered ms in the worklet + (now - hub send time of the newest frame).
// Listening stops when the tab is hidden and when the user stops; an unknown source
// closes the socket with code 4404.

import { decodeListen } from "./frames.js";

export class Listener {
  constructor({ onLevel, onState }) {
    this.onLevel = onLevel;
    this.onState = onState;
    this.ws = null;
    this.ctx = null;
    this.node = null;
    this.lastHubMs = NaN;
    this.active = false;
    document.addEventListener("visibilitychange", () => {
      if (document.hidden && this.active) this.stop("stopped: the tab is hidden");
    });
  }

  async start(source) {
    this.stop();
    this.active = true;
    this.onState("starting");
    try {
      // The hub streams 48 kHz; a context at that rate needs no resampling (the
      // worklet resamples anyway if the browser picked another rate).
      try {
        this.ctx = new AudioContext({ sampleRate: 48000, latencyHint: "interactive" });
      } catch {
        this.ctx = new AudioContext();
      }
      await this.ctx.audioWorklet.addModule(new URL("./worklet.js", import.meta.url));
      if (!this.active) return;
      this.node = new AudioWorkletNode(this.ctx, "anamnesis-listen", {
        numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [2] });
      this.node.port.onmessage = (ev) => {
        const { rms, peak, bufferedMs } = ev.data;
        const latencyMs = bufferedMs + (Date.now() - this.lastHubMs);
        this.onLevel({ rms, peak, bufferedMs, latencyMs });
      };
      this.node.connect(this.ctx.destination);
      await this.ctx.resume();
    } catch (err) {
      this.stop(`audio unavailable: ${err.message}`);
      return;
    }
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws/listen?source=${encodeURIComponent(source)}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        try {
          const hello = JSON.parse(ev.data);
          if (hello.type === "listen") this.onState("playing");
        } catch { /* ignore a malformed text message */ }
        return;
      }
      let frame;
      try {
        frame = decodeListen(ev.data);
      } catch (err) {
        console.warn(err.message);
        return;
      }
      this.lastHubMs = frame.hubTimeMs;
      this.node.port.postMessage(
        { samples: frame.samples, channels: frame.channels, rate: frame.rate, panic: frame.panic },
        [frame.samples.buffer]);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      const why = ev.code === 4404 ? `nothing to listen to called ${source}`
        : ev.code === 1000 || ev.code === 1001 ? null : `stream closed (${ev.code}${ev.reason ? ": " + ev.reason : ""})`;
      this.stop(why);
    };
  }

  stop(why = null) {
    const wasActive = this.active;
    this.active = false;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
    }
    if (this.node) {
      // A level the worklet posted before it stopped must not show after "off".
      this.node.port.onmessage = null;
      this.node.disconnect();
      this.node = null;
    }
    if (this.ctx) {
      this.ctx.close().catch(() => {});
      this.ctx = null;
    }
    if (wasActive || why) this.onState("off", why);
  }
}
