"""The running agent process: one agent, or several on one clock (``--channels``).

:func:`serve` takes the checked configs of :mod:`anamnesis.agents.main` and runs them in
one event loop (DESIGN "The agent process"): for each agent it builds the model
(compiling its kernels on a throwaway twin), opens and locks its state directory,
resumes its autosave unless ``--fresh``, opens its RTP port; then one audio backend
clocks them all — one agent's own, or with ``--channels`` one stream of one device (or
one null clock) with a :class:`~anamnesis.agents.audio.backends.Lane` per agent — and
each agent gets its own control services (OSC, OSCQuery, zeroconf: its own identity),
autosave and monitor. It prints ``agent ID ready osc=PORT http=PORT`` per agent. On
SIGINT/SIGTERM: the services close (zeroconf unregisters first), the audio stops
(threads joined), every autosave is written and every state directory released. An
agent a hub started does the same when that hub ends (:mod:`anamnesis.agents.lifeline`).

Threads: the asyncio main thread, the audio thread (PortAudio's, the null clock's or the
hub clock's), and one named executor thread ``anamnesis-disk`` for file work, created in
:func:`serve` and joined before exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from anamnesis.agents.lifeline import hold
from anamnesis.agents.main import AgentConfig
from anamnesis.agents.recipe import config_model, config_warm_up

log = logging.getLogger("anamnesis.agents.main")
#: Seconds between checks of the audio thread (xruns, stalls).
MONITOR_S = 2.0


class StartupError(RuntimeError):
    """The agent cannot start; the message is one line for the user."""


@dataclass
class AgentStack:
    """What one agent of the process owns (closed in reverse order)."""

    config: AgentConfig
    engine: Any = None
    store: Any = None
    link: Any = None
    source: Any = None
    hears: str = ""
    control: Any = None
    services: Any = None
    tasks: list[asyncio.Task] = field(default_factory=list)


def _input_source(config: AgentConfig) -> tuple[Any, str]:
    """The backend's ``source`` for what the agent hears (None: the device's input) and
    a description for the log. Renders a preset's input, so off the event loop."""
    import numpy as np

    from anamnesis.agents.audio.inputs import LoopedSignal, preset_input

    if config.input is None:
        return None, "the hub's input"
    if config.input == "silence":
        source = LoopedSignal(np.zeros(1), "silence")
    elif config.input == "preset":
        source = preset_input(config.preset, config.sample_rate, seed=config.seed)
        if source is None:
            return None, f"silence (preset {config.preset} has no input signal)"
    elif config.audio == "null":
        return None, "silence (the null clock has no microphone; --input preset plays the preset's)"
    else:
        return None, f"the device's input channel {config.in_channel}"
    source.warm_up()
    return source, source.description


async def _open(config: AgentConfig, stack: AgentStack) -> None:
    """Build ``stack``'s model and engine, lock its state directory, open its RTP port and
    prepare what it hears (in the order they are undone)."""
    from anamnesis.agents.dsp.engine import AgentEngine
    from anamnesis.agents.net.link import AgentLink
    from anamnesis.agents.snapshots import SnapshotStore, StateDirLocked

    loop = asyncio.get_running_loop()
    try:
        make_model, follow = config_model(config)
        model = make_model()
        if hasattr(model, "start_worker"):   # a latent model: inference off the audio thread
            model.start_worker()
        stack.engine = AgentEngine(model, block=config.block, sample_rate=config.sample_rate,
                                   ceiling_db=config.ceiling_db, follow=follow)
    except ValueError as exc:
        raise StartupError(f"cannot build the {config.model} model: {exc}") from None
    except Exception as exc:  # a broken model module: say what, in one line (details in debug)
        log.debug("model construction failed", exc_info=True)
        raise StartupError(f"cannot build the {config.model} model: "
                           f"{type(exc).__name__}: {exc}") from None
    try:
        await loop.run_in_executor(None, config_warm_up, make_model, follow, config)
    except RuntimeError as exc:
        raise StartupError(str(exc)) from None
    store = SnapshotStore(config.state_dir, agent_id=config.agent_id, model_kind=config.model)
    try:
        await loop.run_in_executor(None, store.open)
    except StateDirLocked as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(f"cannot use the state directory {config.state_dir}: {exc}") from None
    stack.store = store
    try:
        link = AgentLink(agent_id=config.agent_id, interface=config.interface,
                         block=config.block, sample_rate=config.sample_rate, hub_host=config.hub)
        try:
            await link.open(config.rtp_port)
        except OSError as exc:
            if not (config.prefer_ports and config.rtp_port):
                raise
            log.warning("agent %s: RTP port %d is taken (%s); it takes a free one",
                        config.agent_id, config.rtp_port, exc)
            await link.open(0)
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot open the RTP port {config.interface}:{config.rtp_port}: "
                           f"{exc}") from None
    stack.link = link
    link.set_deployed(config.audio != "hub")
    stack.source, stack.hears = await loop.run_in_executor(None, _input_source, config)


def _backend(stacks: list[AgentStack]) -> Any:
    """The one audio backend of the process: the agent's own, or one clock for all."""
    from anamnesis.agents.audio.backends import (
        BackendError,
        Lane,
        create_backend,
        create_shared_backend,
    )

    first = stacks[0].config
    try:
        if len(stacks) == 1:
            s = stacks[0]
            return create_backend(first.audio, s.engine, device=first.device,
                                  in_channel=first.in_channel, out_channel=first.out_channel,
                                  client_name=f"anamnesis-{first.agent_id}", link=s.link,
                                  source=s.source, hub_fallback_s=first.hub_fallback_s,
                                  clock_ppm=first.clock_ppm)
        lanes = [Lane(s.engine, link=s.link, source=s.source, in_channel=s.config.in_channel,
                      out_channel=s.config.out_channel) for s in stacks]
        names = "-".join(s.config.agent_id for s in stacks)
        return create_shared_backend(first.audio, lanes, device=first.device,
                                     client_name=f"anamnesis-{names}"[:60],
                                     clock_ppm=first.clock_ppm)
    except BackendError as exc:
        raise StartupError(str(exc)) from None


async def serve(configs: list[AgentConfig]) -> int:
    """Run the agents of ``configs`` (one, or one per channel) until SIGINT/SIGTERM; 0."""
    from anamnesis.agents.audio.backends import BackendError
    from anamnesis.agents.control import AgentControl

    sys.setswitchinterval(0.001)  # the audio callback must not wait 5 ms for the GIL
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anamnesis-disk")
    loop.set_default_executor(executor)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    lifeline = hold(stop.set)       # started by a hub: end with it
    keys: dict[Any, bytes | None] = {}
    for config in configs:
        if config.key_file is not None and config.key_file not in keys:
            from anamnesis.agents.protocol.key import load_key
            try:
                keys[config.key_file] = load_key(config.key_file)
            except ValueError as exc:
                raise StartupError(str(exc)) from None
    stacks: list[AgentStack] = []
    backend = None
    started = False
    try:
        for config in configs:
            stacks.append(AgentStack(config))
            await _open(config, stacks[-1])
        backend = _backend(stacks)
        for s in stacks:
            link = s.link
            s.control = AgentControl(s.engine, agent_id=s.config.agent_id, store=s.store,
                                     backend_stats=lambda link=link: {**backend.stats(),
                                                                      **link.telemetry()})
            if not s.config.fresh:
                await _resume(s.control, s.store)
            s.engine.attach_loop(loop)
        # Everything heavy (imports, a full collection) happens before the audio
        # clock starts: each would hold the GIL long enough to make the callback late.
        from anamnesis.agents.net import services as _services  # noqa: F401  (imported now)
        gc.collect()
        gc.freeze()
        try:
            backend.start()
        except BackendError as exc:
            raise StartupError(str(exc)) from None
        started = True
        for s in stacks:
            c = s.config
            log.info("agent %s: %s model on %s; hears %s", c.agent_id, c.model,
                     backend.describe(), s.hears)
            try:
                s.services = await _control_services(s, keys.get(c.key_file))
            except OSError as exc:
                raise StartupError(f"cannot open the control ports of {c.agent_id} on "
                                   f"{c.interface}: {exc}") from None
        gc.freeze()  # start-up objects never reach the collector again: shorter GC pauses
        for s in stacks:
            print(f"agent {s.config.agent_id} ready osc={s.services.osc_port} "
                  f"http={s.services.http_port}", flush=True)
            s.tasks = [
                asyncio.create_task(_autosave_loop(s.control, s.config.autosave_s),
                                    name=f"autosave-{s.config.agent_id}"),
                asyncio.create_task(_monitor_loop(s.control, s.engine, s.config),
                                    name=f"monitor-{s.config.agent_id}")]
        await stop.wait()
        log.info("%s: shutting down", ", ".join(f"agent {s.config.agent_id}" for s in stacks))
    finally:
        if lifeline is not None:
            lifeline.cancel()
        await _close(stacks, backend, started)
        executor.shutdown(wait=True)
    return 0


async def _control_services(s: AgentStack, key: bytes | None) -> Any:
    """OSC, OSCQuery and zeroconf for one agent; with ``--prefer-ports`` a taken OSC or
    HTTP port gives way to free ones (logged)."""
    from anamnesis.agents.net.access import HostFilter
    from anamnesis.agents.net.services import start_control_services

    c = s.config
    access = HostFilter(c.hub, c.allow, offer_mic=c.offer_mic)
    log.info("agent %s: %s", c.agent_id, access.describe())

    async def start(osc_port: int, http_port: int) -> Any:
        return await start_control_services(
            s.control, interface=c.interface, osc_port=osc_port, http_port=http_port,
            installation=c.installation, key=key, announce=c.announce,
            rtp_port=s.link.port, link=s.link, access=access)

    try:
        return await start(c.osc_port, c.http_port)
    except OSError as exc:
        if not (c.prefer_ports and (c.osc_port or c.http_port)):
            raise
        log.warning("agent %s: OSC port %d or HTTP port %d is taken (%s); it takes free ones",
                    c.agent_id, c.osc_port, c.http_port, exc)
        return await start(0, 0)


async def _close(stacks: list[AgentStack], backend: Any, started: bool) -> None:
    """Undo :func:`serve` for every agent: services, audio, links, autosaves, state."""
    for s in stacks:
        for task in s.tasks:
            task.cancel()
        for task in s.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if s.services is not None:
            try:
                await s.services.close()
            except Exception:
                log.exception("closing the control services of %s failed", s.config.agent_id)
    if backend is not None:
        backend.stop()
    for s in stacks:
        if s.link is not None:
            s.link.close()
        if started and s.control is not None:
            try:
                await s.control.autosave()
                log.info("agent %s: state saved to %s", s.config.agent_id, s.config.state_dir)
            except Exception:
                log.exception("the final autosave of %s failed", s.config.agent_id)
        if s.store is not None:
            s.store.close()
        if s.control is not None:
            tele = s.control.telemetry()
            log.info("agent %s: stopped after %d blocks; xruns %d, audio errors %d, "
                     "blow-ups %d", s.config.agent_id, tele["blocks"], tele["xruns"],
                     tele["errors"], tele.get("blowups", 0.0))


async def _resume(control: Any, store: Any) -> None:
    """Apply the newest good autosave, or say why the agent starts fresh."""
    loop = asyncio.get_running_loop()
    snap = await loop.run_in_executor(None, store.load_autosave_sync)
    if snap is None:
        log.info("agent %s: no autosave to resume in %s; starting fresh", control.agent_id,
                 store.state_dir)
        return
    try:
        await control.apply_snapshot(snap, what="autosave")
    except ValueError as exc:
        log.error("agent %s: cannot resume the autosave (%s); starting fresh",
                  control.agent_id, exc)
        return
    age = max(0.0, time.time() - snap.created)
    log.info("agent %s: resumed the autosave of %s (%.0f s old, digest %s)", control.agent_id,
             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.created)), age,
             snap.digest()[:16])


async def _autosave_loop(control: Any, every_s: float) -> None:
    """Write the autosave every ``every_s`` seconds; a failure is logged, never fatal."""
    failures = 0
    while True:
        await asyncio.sleep(every_s)
        try:
            await control.autosave()
            failures = 0
        except Exception as exc:
            failures += 1
            if failures == 1 or failures % 20 == 0:
                log.error("autosave failed (%d in a row): %s: %s", failures,
                          type(exc).__name__, exc)


async def _monitor_loop(control: Any, engine: Any, config: AgentConfig) -> None:
    """Log new xruns (at most every 30 s) and a stalled audio clock."""
    last_xruns = 0.0
    last_blocks = -1.0
    last_log = -1e9
    stalled = False
    while True:
        await asyncio.sleep(MONITOR_S)
        tele = control.telemetry()
        now = time.monotonic()
        if tele["xruns"] > last_xruns and now - last_log >= 30.0:
            log.warning("agent %s: %d new xrun(s) (total %d); callback p99 %.2f ms of %.2f ms",
                        config.agent_id, tele["xruns"] - last_xruns, tele["xruns"],
                        tele["callback_p99_ms"], tele["block_period_ms"])
            last_xruns, last_log = tele["xruns"], now
        if tele["blocks"] == last_blocks and engine.clock_running:
            if not stalled:
                log.error("agent %s: no audio block for %.0f s: the audio clock is stalled",
                          config.agent_id, MONITOR_S)
                stalled = True
        elif stalled:
            log.info("agent %s: the audio clock runs again", config.agent_id)
            stalled = False
        last_blocks = tele["blocks"]


__all__ = ["AgentStack", "StartupError", "serve"]
