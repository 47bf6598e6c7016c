// Small helpers shared by the panels: DOM building (text only through textContent)
// and a throttle for streams of user input.

/**
 * A DOM element: h("button", {class: "x", dataset: {testid: "panic"}, onclick: f}, "Panic").
 * Strings among the children become text nodes (never parsed as HTML).
 */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "testid") el.setAttribute("data-testid", value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "value" && "value" in el) el.value = value;
    else if (key === "checked") el.checked = !!value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/**
 * An SVG element: svg("circle", {cx: 1, cy: 2, r: 3}, "tooltip text"). Attributes are
 * set as strings; `text`, when given, is the element's text content.
 */
export function svg(tag, attrs = {}, text = null) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== null) el.textContent = text;
  return el;
}

/**
 * `fn` called at most once per `ms` milliseconds; the last call of a burst is always
 * made (trailing), so the final value of a drag arrives. `flush()` makes a pending
 * call now; `cancel()` drops it. `now` is injectable for tests.
 */
export function throttle(fn, ms, { now = () => Date.now(), setTimer = setTimeout, clearTimer = clearTimeout } = {}) {
  let last = -Infinity;
  let timer = null;
  let pending = null;
  const fire = () => {
    timer = null;
    if (!pending) return;
    const args = pending;
    pending = null;
    last = now();
    fn(...args);
  };
  const throttled = (...args) => {
    pending = args;
    const wait = last + ms - now();
    if (wait <= 0) {
      if (timer !== null) { clearTimer(timer); timer = null; }
      fire();
    } else if (timer === null) {
      timer = setTimer(fire, wait);
    }
  };
  throttled.flush = () => { if (timer !== null) { clearTimer(timer); timer = null; } fire(); };
  throttled.cancel = () => { if (timer !== null) clearTimer(timer); timer = null; pending = null; };
  return throttled;
}

/** Reconnect delay (ms) after `attempt` failures: 250 ms doubling to 5 s, ±20 % jitter. */
export function backoff(attempt, random = Math.random) {
  const base = Math.min(5000, 250 * 2 ** Math.max(0, attempt));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/** Replace the children of `el` by `children`. */
export function setChildren(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

/**
 * A panel's reporter: `report(what, promise)` awaits the promise, clears `status` on
 * success and shows "what: message" there on failure; resolves to the result, or
 * undefined after a failure.
 */
export function reporter(status) {
  return async (what, promise) => {
    try {
      const r = await promise;
      status.textContent = "";
      return r;
    } catch (err) {
      status.textContent = `${what}: ${err.message}`;
      return undefined;
    }
  };
}
