// Binary frames from the hub (pure decoders; no DOM).
//
// Scope/spectrum messages on /ws?scopes=1 (hub/scopes.py): a run of frames, each a
// 16-byte little-endian header "<4sBBHII" = magic "ANSF", kind (1 scope, 2 spectrum),
// version (1), agent index u16, count u32, sample rate u32, then count float32.
//
// Listen audio on /ws/listen (hub/api.py): one frame per message, a 28-byte header
// "<4sBBHIIdI" = magic "ANLS", version (1), channels u8, reserved u16, sample rate
// u32, seq u32, hub time (Unix ms, f64), frames u32, then frames*channels int16
// interleaved (full scale 32767).

export const SCOPE = 1;
export const SPECTRUM = 2;
export const SCOPE_HEADER = 16;
export const LISTEN_HEADER = 28;

function magicIs(view, offset, text) {
  for (let i = 0; i < 4; i++) if (view.getUint8(offset + i) !== text.charCodeAt(i)) return false;
  return true;
}

/**
 * Every frame of a scope message: [{kind, index, rate, data: Float32Array}]. The data
 * are copies (safe to keep). Throws Error on a malformed message (a truncated frame,
 * a wrong magic or version), naming the byte offset.
 */
export function decodeScopes(buffer) {
  const view = new DataView(buffer);
  const out = [];
  let offset = 0;
  while (offset < buffer.byteLength) {
    if (buffer.byteLength - offset < SCOPE_HEADER) throw new Error(`truncated scope header at byte ${offset}`);
    const kind = view.getUint8(offset + 4);
    if (!magicIs(view, offset, "ANSF") || view.getUint8(offset + 5) !== 1 || (kind !== SCOPE && kind !== SPECTRUM)) {
      throw new Error(`not a scope frame at byte ${offset}`);
    }
    const index = view.getUint16(offset + 6, true);
    const count = view.getUint32(offset + 8, true);
    const rate = view.getUint32(offset + 12, true);
    offset += SCOPE_HEADER;
    if (offset + 4 * count > buffer.byteLength) throw new Error(`truncated scope payload at byte ${offset}`);
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(offset + 4 * i, true);
    out.push({ kind, index, rate, data });
    offset += 4 * count;
  }
  return out;
}

/**
 * One listen frame: {channels, rate, seq, hubTimeMs, frames, samples: Float32Array,
 * panic} (interleaved, scaled to full scale 1; panic: the hub panicked, drop what is
 * buffered — bit 0 of the header's flags). Throws Error when malformed.
 */
export function decodeListen(buffer) {
  if (buffer.byteLength < LISTEN_HEADER) throw new Error("truncated listen header");
  const view = new DataView(buffer);
  if (!magicIs(view, 0, "ANLS") || view.getUint8(4) !== 1) throw new Error("not a listen frame");
  const channels = view.getUint8(5);
  const panic = (view.getUint16(6, true) & 1) === 1;
  const rate = view.getUint32(8, true);
  const seq = view.getUint32(12, true);
  const hubTimeMs = view.getFloat64(16, true);
  const frames = view.getUint32(24, true);
  if (channels < 1) throw new Error("a listen frame with no channels");
  const n = frames * channels;
  if (LISTEN_HEADER + 2 * n > buffer.byteLength) throw new Error("truncated listen payload");
  const samples = new Float32Array(n);
  for (let i = 0; i < n; i++) samples[i] = view.getInt16(LISTEN_HEADER + 2 * i, true) / 32767;
  return { channels, rate, seq, hubTimeMs, frames, samples, panic };
}

/** Encode a listen frame (the inverse of decodeListen; for tests). */
export function encodeListen({ channels, rate, seq, hubTimeMs, samples, panic = false }) {
  const frames = samples.length / channels;
  const buffer = new ArrayBuffer(LISTEN_HEADER + 2 * samples.length);
  const view = new DataView(buffer);
  "ANLS".split("").forEach((c, i) => view.setUint8(i, c.charCodeAt(0)));
  view.setUint8(4, 1);
  view.setUint8(5, channels);
  view.setUint16(6, panic ? 1 : 0, true);
  view.setUint32(8, rate, true);
  view.setUint32(12, seq, true);
  view.setFloat64(16, hubTimeMs, true);
  view.setUint32(24, frames, true);
  for (let i = 0; i < samples.length; i++) {
    view.setInt16(LISTEN_HEADER + 2 * i, Math.max(-32767, Math.min(32767, Math.round(samples[i] * 32767))), true);
  }
  return buffer;
}
