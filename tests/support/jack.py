"""A private JACK server for one test (dummy driver, TESTING.md) and the JACK peers'
checks: :func:`require_jack` (skip locally, fail in CI where ``.ci/run`` installs them),
:func:`jack_ports` and :func:`private_jackd`."""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The JACK peers' programs and the Debian packages they come in.
JACK_PEERS = {"jackd": "jackd2", "jack_lsp": "jackd2", "jack_connect": "jackd2",
              "jack_disconnect": "jackd2", "ffmpeg": "ffmpeg"}


def require_jack() -> None:
    """Skip (fail in CI) unless jackd, its tools, ffmpeg and PortAudio are installed."""
    missing = sorted({pkg for prog, pkg in JACK_PEERS.items() if shutil.which(prog) is None})
    if ctypes.util.find_library("portaudio") is None:
        missing.append("libportaudio2")
    if not missing:
        return
    message = (f"JACK test peers missing: install {' '.join(missing)} "
               "(apt-get install --no-install-recommends)")
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must provide the peers: {message}")
    pytest.skip(message)


def jack_ports(env: dict[str, str]) -> list[str]:
    """The ports the JACK server of ``env`` lists."""
    return subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True, check=False,
                          timeout=10).stdout.split()


@contextlib.contextmanager
def private_jackd(log_dir: Path, sample_rate: int, channels: int, prefix: str = "anm-test"
                  ) -> Iterator[dict[str, str]]:
    """Run a jackd of our own (dummy driver, ``sample_rate`` Hz, 256 frames, ``channels``
    in and out), named so no other server is touched; yields the environment that points
    JACK clients at it. Stopped, and its shared-memory files removed, at the end."""
    require_jack()
    name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
    log_path = log_dir / "jackd.log"
    with open(log_path, "wb") as log:
        jackd = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r",
                                  str(sample_rate), "-p", "256", "-C", str(channels),
                                  "-P", str(channels)],
                                 env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10.0
        while "system:playback_1" not in jack_ports(env):
            if jackd.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("jackd did not start: " + log_path.read_text(errors="replace"))
            time.sleep(0.1)
        yield env
    finally:
        jackd.terminate()
        try:
            jackd.wait(10)
        except subprocess.TimeoutExpired:
            jackd.kill()
            jackd.wait(5)
        for pattern in (f"jack_{name}_*", f"jack_sem.*_{name}_*"):
            for leftover in Path("/dev/shm").glob(pattern):
                leftover.unlink(missing_ok=True)
