// Asks for the installation's token when the hub answers 401 (no or wrong cookie).
// Submitting navigates to /?token=…: the hub sets its HttpOnly cookie and redirects
// back to /, so the token leaves the address bar and is never kept by this page.

import { h } from "../util.js";

export function mountLogin(root, ctx) {
  const input = h("input", { type: "password", testid: "token-input", autocomplete: "current-password",
                             placeholder: "token", "aria-label": "access token", required: true });
  const form = h("form", { class: "login", testid: "token-form" },
    h("p", {}, "This hub needs its access token (printed by ", h("code", {}, "anamnesis hub"),
      " as the Dashboard URL)."),
    // A username field (hidden) so password managers know what the token is for.
    h("input", { type: "text", name: "username", autocomplete: "username", value: "anamnesis",
                 hidden: true, "aria-hidden": "true" }),
    input, h("button", { type: "submit" }, "Open"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (token) location.assign(`/?token=${encodeURIComponent(token)}`);
  });
  root.append(form);
  root.hidden = true;
  return {
    update(state) {
      const need = state.conn.status === "unauthorized";
      if (need && root.hidden) {
        root.hidden = false;
        input.focus();
      } else if (!need) root.hidden = true;
    },
  };
}
