"""Guards every test runs under (STYLE 14, after python-zeroconf's conftest), and the
fixtures every test may name.

* **No leaked thread.** A thread that a test started must have ended when the test
  ends (a few seconds of grace for threads that are being joined). Threads that live
  as long as an event loop or a module's fixture are not the test's: asyncio's default
  executor (``asyncio_N``, shut down with its loop), asyncio's child watcher
  (``asyncio-waitpid-N``, one per child process: it ends when the process is reaped,
  and a module's fixture may own the process) and threads that existed before the
  test began. A test that leaks one fails, naming the thread.
* **No blocked loop.** Every async test on its own (function-scoped) event loop runs
  under ``loop_watchdog``: it fails if a callback held the loop longer than
  ``support.controlplane.MAX_LOOP_STALL``, less the time the machine kept the loop's
  thread waiting for a core. Tests sharing a module's loop are watched where they
  name the fixture.
"""

from __future__ import annotations

import threading
import time

import pytest
import pytest_asyncio

# The control plane's fixtures, for every test that names them: warm_kernels (numba's
# cache filled once per session) and loop_watchdog (a test fails if it blocks its loop).
from support.controlplane import loop_watchdog, warm_kernels  # noqa: F401

#: Seconds a test's threads get to finish after it ends.
THREAD_GRACE_S = 5.0
#: Thread name prefixes that belong to an event loop or a child process, not to a test.
LOOP_THREADS = ("asyncio_", "asyncio-waitpid-")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every async test that has a loop of its own under ``loop_watchdog``."""
    for item in items:
        if not pytest_asyncio.is_async_test(item):
            continue
        marker = item.get_closest_marker("asyncio")
        if (marker and marker.kwargs.get("loop_scope", "function")) not in (None, "function"):
            continue
        if "loop_watchdog" not in item.fixturenames:
            item.fixturenames.append("loop_watchdog")


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a thread of its own running (see the module docstring)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    while True:
        leaked = [t for t in threading.enumerate()
                  if t not in before and t.is_alive() and not t.name.startswith(LOOP_THREADS)]
        if not leaked or time.monotonic() > deadline:
            break
        leaked[0].join(0.05)
    assert not leaked, "threads left running: " + ", ".join(
        f"{t.name} (daemon={t.daemon})" for t in leaked)
