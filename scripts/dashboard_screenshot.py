"""Take the README's pictures of the dashboard: the live demo (``anamnesis demo``), seen
by Debian's Chromium at desktop and phone size.

    .venv/bin/python scripts/dashboard_screenshot.py [--out docs]

Starts the demo on 127.0.0.1 (no audio, a temporary state dir), waits until every
agent's card shows sound, opens one agent's weights, and writes
``dashboard.png`` (1400 px wide) and ``dashboard-phone.png`` (390 px) into ``--out``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.web import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (TESTING.md's flags, once)

PORT = 8479


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as state:
        demo = subprocess.Popen(
            [sys.executable, "-m", "anamnesis.hub.cli", "demo", "--no-audio", "--http", f"127.0.0.1:{PORT}",
             "--osc", "127.0.0.1:0", "--state-dir", state],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            url = None
            deadline = time.monotonic() + 120
            while url is None and time.monotonic() < deadline:
                line = demo.stdout.readline()
                if not line:
                    raise SystemExit("the demo stopped before printing its dashboard URL")
                m = re.search(r"Dashboard: (http://\S+)", line)
                url = m.group(1) if m else None
            ids = [f"a{i}" for i in range(1, 9)]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=CHROMIUM_ARGS)
                for name, size in (("dashboard.png", (1400, 900)), ("dashboard-phone.png", (390, 844))):
                    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
                    page.goto(url)
                    page.wait_for_function("""ids => ids.every((id) => {
                        const m = document.querySelector(`[data-testid="meter-${id}"]`);
                        return m && Number(m.dataset.rms) > 1e-4;
                    })""", arg=ids, timeout=60_000)
                    if name == "dashboard.png":
                        page.click('[data-testid="weights-toggle-a3"]')
                    time.sleep(3.0)   # sparklines and scopes fill
                    page.screenshot(path=str(args.out / name), full_page=(name == "dashboard.png"))
                    print(f"wrote {args.out / name}")
                    page.close()
                browser.close()
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=20)
            except subprocess.TimeoutExpired:
                demo.kill()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("CI", "")
    sys.exit(main())
