// AudioWorklet of the listen stream (listen.js): a ring buffer between the network and
// the audio thread.
//
// The page posts {samples: Float32Array interleaved, channels, rate}; process() reads
// them at the context's rate with linear interpolation (a step of rate/sampleRate
// input frames per output frame, so a 44.1 kHz context plays a 48 kHz stream at the
// right pitch). Mono plays on both outputs. Playback starts once PREBUFFER_S is
// buffered; on an underrun it outputs silence and buffers again; a backlog over
// MAX_BUFFER_S (a stalled tab) is dropped down to PREBUFFER_S; a message flagged panic
// (the hub's panic) drops everything buffered at once. Every ~100 ms it posts
// {rms, peak, bufferedMs} of what it played (levels linear, full scale 1).
// process() allocates nothing but the small report object ~10 times a second.

const CAPACITY_S = 4.0;
const PREBUFFER_S = 0.08;
const MAX_BUFFER_S = 0.5;
const REPORT_S = 0.1;

class ListenProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.rate = sampleRate;
    this.channels = 1;
    this.capacity = Math.ceil(CAPACITY_S * 48000);   // frames (at the stream rate; grown if needed)
    this.left = new Float32Array(this.capacity);
    this.right = new Float32Array(this.capacity);
    this.write = 0;          // frames written so far (absolute)
    this.read = 0;           // read position (absolute, fractional)
    this.playing = false;
    this.sumSq = 0;
    this.peak = 0;
    this.count = 0;
    this.port.onmessage = (ev) => this.push(ev.data);
  }

  push({ samples, channels, rate, panic = false }) {
    if (panic) {             // the hub panicked: what is buffered never plays
      this.read = this.write;
      this.playing = false;
    }
    if (rate !== this.rate) {
      this.rate = rate;
      const capacity = Math.ceil(CAPACITY_S * rate);
      if (capacity > this.capacity) {
        this.capacity = capacity;
        this.left = new Float32Array(capacity);
        this.right = new Float32Array(capacity);
        this.write = 0;
        this.read = 0;
        this.playing = false;
      }
    }
    this.channels = channels;
    const frames = Math.floor(samples.length / channels);
    for (let i = 0; i < frames; i++) {
      const j = (this.write + i) % this.capacity;
      const l = samples[i * channels];
      this.left[j] = l;
      this.right[j] = channels > 1 ? samples[i * channels + 1] : l;
    }
    this.write += frames;
    const buffered = this.write - this.read;
    if (buffered > MAX_BUFFER_S * this.rate || buffered > this.capacity) {
      this.read = this.write - PREBUFFER_S * this.rate;   // drop the backlog
    }
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const l = out[0];
    const r = out.length > 1 ? out[1] : null;
    const n = l.length;
    const step = this.rate / sampleRate;
    if (!this.playing && this.write - this.read >= PREBUFFER_S * this.rate) this.playing = true;
    for (let i = 0; i < n; i++) {
      let a = 0;
      let b = 0;
      if (this.playing && this.read + 1 < this.write) {
        const k = Math.floor(this.read);
        const frac = this.read - k;
        const j0 = k % this.capacity;
        const j1 = (k + 1) % this.capacity;
        a = this.left[j0] + frac * (this.left[j1] - this.left[j0]);
        b = this.right[j0] + frac * (this.right[j1] - this.right[j0]);
        this.read += step;
      } else if (this.playing) {
        this.playing = false;   // underrun: silence until PREBUFFER_S is back
      }
      l[i] = a;
      if (r) r[i] = b;
      const m = Math.max(Math.abs(a), Math.abs(b));
      this.sumSq += 0.5 * (a * a + b * b);
      if (m > this.peak) this.peak = m;
    }
    this.count += n;
    if (this.count >= REPORT_S * sampleRate) {
      const buffered = Math.max(0, this.write - this.read);
      this.port.postMessage({ rms: Math.sqrt(this.sumSq / this.count), peak: this.peak,
                              bufferedMs: 1000 * buffered / this.rate });
      this.sumSq = 0;
      this.peak = 0;
      this.count = 0;
    }
    return true;
  }
}

registerProcessor("anamnesis-listen", ListenProcessor);
